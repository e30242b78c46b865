"""Pairwise accuracy: strict > 1/2, ties apart, soft and reversed labels, judges without batching."""

from __future__ import annotations

import math

import pytest
import torch

from prefkit.data.records import PairRecord
from prefkit.preference import JudgeError, evaluate_pairs
from prefkit.preference.evaluation import accuracy_from_probabilities


def test_accuracy_by_hand():
    p = torch.tensor([0.9, 0.4, 0.5, 0.7, 0.2, 0.6])
    labels = torch.tensor([1.0, 1.0, 1.0, 0.5, 0.0, 0.8])
    out = accuracy_from_probabilities(p, labels)
    # decided: rows 0 (right), 1 (wrong), 2 (exactly 1/2: wrong), 4 (label 0, p < 1/2: right), 5 (right)
    assert out["n"] == 5 and out["accuracy"] == pytest.approx(3 / 5)
    assert out["ties"] == 1 and out["tie_mean_abs_deviation"] == pytest.approx(0.2)
    assert out["undecided"] == 1
    expected = -(math.log(0.9) + math.log(0.4) + math.log(0.5) + (0.5 * math.log(0.7) + 0.5 * math.log(0.3))
                 + math.log(0.8) + (0.8 * math.log(0.6) + 0.2 * math.log(0.4))) / 6
    assert out["log_loss"] == pytest.approx(expected)
    assert out["mean_prob_preferred"] == pytest.approx((0.9 + 0.4 + 0.5 + 0.8 + 0.6) / 5)


def test_all_ties_have_no_accuracy():
    out = accuracy_from_probabilities(torch.tensor([0.5, 0.6]), torch.tensor([0.5, 0.5]))
    assert out["accuracy"] is None and out["n"] == 0 and out["ties"] == 2


class LengthJudge:
    """No batch_size argument: evaluate_pairs must call it as is."""

    def prob(self, prompts, a, b):
        return [1.0 if len(x) > len(y) else 0.0 for x, y in zip(a, b)]


class BrokenJudge:
    def prob(self, prompts, a, b):
        return [1.5] * len(prompts)


def test_evaluate_any_judge_and_validate_its_answers():
    records = [PairRecord(prompt="p", chosen="long answer", rejected="short"),
               PairRecord(prompt="p", chosen="x", rejected="yy"),
               PairRecord(prompt="p", chosen="abc", rejected="de", label=0.5)]
    out = evaluate_pairs(LengthJudge(), records)
    assert (out["accuracy"], out["n"], out["ties"]) == (0.5, 2, 1)
    with pytest.raises(JudgeError, match="not a probability"):
        evaluate_pairs(BrokenJudge(), records)
    with pytest.raises(ValueError, match="no pairs"):
        evaluate_pairs(LengthJudge(), [])
