"""Chain of Hindsight sequences: the paper's templates, loss only on response fields, ties."""

from __future__ import annotations

import numpy as np
import pytest

from prefkit.data import PairRecord
from prefkit.data.hindsight import PHRASES, hindsight_examples, hindsight_prompt


def test_the_four_templates_with_the_response_fields_trainable():
    pair = PairRecord("explain tides", "the moon pulls water", "dunno")
    seen = {}
    for seed in range(40):
        (example,), _ = hindsight_examples([pair], np.random.default_rng(seed))
        seen[example.template] = example
    assert set(seen) == {"p", "n", "np", "pn"}
    assert seen["np"].text == "User: explain tides An unhelpful answer: dunno A helpful answer: the moon pulls water"
    assert seen["p"].text == "User: explain tides A helpful answer: the moon pulls water"
    trained = [s.text for s in seen["pn"].segments if s.train]
    assert trained == ["the moon pulls water", "dunno"]  # markers and the prompt carry no loss
    assert hindsight_prompt("explain tides") == "User: explain tides A helpful answer:"


def test_ties_are_skipped_labels_below_a_half_swap_and_bad_settings_fail():
    pairs = [PairRecord("q", "a", "b", label=0.5), PairRecord("q", "bad", "good", label=0.0)]
    examples, ties = hindsight_examples(pairs, np.random.default_rng(0), templates=("p",), phrases=(1,), per_pair=2)
    assert ties == 1 and len(examples) == 2
    assert all(e.text == f"User: q {PHRASES[1][0]} good" for e in examples)
    with pytest.raises(ValueError, match="templates"):
        hindsight_examples(pairs, np.random.default_rng(0), templates=("pp",))
    with pytest.raises(ValueError, match="phrases"):
        hindsight_examples(pairs, np.random.default_rng(0), phrases=(9,))
