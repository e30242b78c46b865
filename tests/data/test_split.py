"""split(): deterministic, by prompt, order-independent."""

import random

import pytest

from prefkit.data import PairRecord, split


def pairs(n_prompts, per_prompt):
    return [PairRecord(f"prompt {p}", f"a{i}", f"b{i}") for p in range(n_prompts) for i in range(per_prompt)]


def test_no_prompt_on_both_sides_and_sizes():
    records = pairs(40, 3)
    train, evaluation = split(records, 0.25, seed=0)
    assert len(train) + len(evaluation) == 120
    assert {r.prompt for r in train}.isdisjoint({r.prompt for r in evaluation})
    assert len(evaluation) == 30  # 10 whole groups of 3
    assert train == [r for r in records if r in train]  # input order kept


def test_deterministic_and_independent_of_record_order():
    records = pairs(30, 2)
    shuffled = records[:]
    random.Random(1).shuffle(shuffled)
    a = split(records, 0.2, seed=7)[1]
    b = split(records, 0.2, seed=7)[1]
    c = split(shuffled, 0.2, seed=7)[1]
    assert a == b
    assert {r.prompt for r in a} == {r.prompt for r in c}
    assert {r.prompt for r in split(records, 0.2, seed=8)[1]} != {r.prompt for r in a}


def test_small_fraction_still_gives_one_group_and_train_keeps_one():
    records = pairs(2, 5)
    train, evaluation = split(records, 0.01, seed=0)
    assert len(evaluation) == 5 and len(train) == 5
    train, evaluation = split(records, 0.9, seed=0)
    assert len(evaluation) == 5 and len(train) == 5


def test_bad_arguments():
    assert split(pairs(3, 1), 0.0, seed=0) == (pairs(3, 1), [])
    with pytest.raises(ValueError, match="single distinct prompt"):
        split(pairs(1, 4), 0.5, seed=0)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        split(pairs(3, 1), 1.0, seed=0)
