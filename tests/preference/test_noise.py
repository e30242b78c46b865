"""Noise detectors: BALD by hand, loss-history z-scores, flags, relabelling, ensemble strength."""

from __future__ import annotations

import math

import pytest
import torch

from prefkit.data.records import PairRecord
from prefkit.preference import noise
from tests.preference.conftest import make_model


def test_bald_by_hand():
    agree = torch.tensor([[0.8, 0.3], [0.8, 0.3], [0.8, 0.3]])
    torch.testing.assert_close(noise.bald(agree), torch.zeros(2))
    split = torch.tensor([[1.0], [0.0]])  # confident passes that disagree: H(1/2) - 0 = ln 2
    torch.testing.assert_close(noise.bald(split), torch.tensor([math.log(2)]), rtol=1e-5, atol=1e-6)
    p = torch.tensor([[0.9], [0.5]])
    h = lambda q: -(q * math.log(q) + (1 - q) * math.log(1 - q))  # noqa: E731
    expected = h(0.7) - 0.5 * (h(0.9) + h(0.5))
    torch.testing.assert_close(noise.bald(p), torch.tensor([expected]), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"\[T, N\]"):
        noise.bald(torch.ones(3))


def test_loss_outlier_scores_are_standardised():
    z = noise.loss_outlier_scores(torch.tensor([1.0, 2.0, 3.0, 6.0]))
    torch.testing.assert_close(z.mean(), torch.tensor(0.0), atol=1e-6, rtol=0)
    torch.testing.assert_close(z.std(unbiased=False), torch.tensor(1.0))
    assert int(z.argmax()) == 3
    torch.testing.assert_close(noise.loss_outlier_scores(torch.ones(3)), torch.zeros(3))


def test_flags_and_precision_recall():
    flags = noise.flag_top(torch.tensor([0.1, 5.0, 3.0, 3.0, -1.0]), 2)
    assert flags.tolist() == [False, True, True, False, False]  # tie at 3.0 broken by index
    truth = torch.tensor([False, True, False, True, False])
    assert noise.precision_recall(flags, truth) == (0.5, 0.5)
    assert noise.precision_recall(torch.zeros(5, dtype=torch.bool), truth) == (0.0, 0.0)
    with pytest.raises(ValueError, match="count"):
        noise.flag_top(torch.ones(3), 4)
    assert noise.suspicion("ensemble", strength_mean=torch.tensor([1.0, -2.0])).tolist() == [-1.0, 2.0]
    with pytest.raises(ValueError, match="needs its scores"):
        noise.suspicion("bald", strength_mean=torch.tensor([1.0]))


def test_relabel_actions():
    records = [PairRecord(prompt="p", chosen=f"c{i}", rejected=f"r{i}") for i in range(3)]
    flags = torch.tensor([False, True, False])
    flipped = noise.relabel(records, flags, "flip")
    assert (flipped[1].chosen, flipped[1].rejected, flipped[1].label) == ("r1", "c1", 1.0)
    assert flipped[0] == records[0]
    assert [r.chosen for r in noise.relabel(records, flags, "drop")] == ["c0", "c2"]
    smoothed = noise.relabel(records, flags, "smooth", strength_mean=torch.tensor([0.0, -2.0, 0.0]))
    assert smoothed[1].label == pytest.approx(1 / (1 + math.exp(2.0)))
    assert noise.relabel(records, flags, "none") == records
    with pytest.raises(ValueError, match="strength"):
        noise.relabel(records, flags, "smooth")


def test_ensemble_strength_is_mean_and_spread_of_logits(records):
    models = [make_model("bt", seed=s) for s in (0, 1, 2)]
    for m in models:
        with torch.no_grad():
            m.head.linear.weight.mul_(20)
    mean, std, logits = noise.ensemble_strength(models, records)
    assert logits.shape == (3, 3)
    for i, m in enumerate(models):
        r_c = m.score([r.prompt for r in records], [r.chosen for r in records])
        r_r = m.score([r.prompt for r in records], [r.rejected for r in records])
        torch.testing.assert_close(logits[i], r_c - r_r, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(mean, logits.mean(0))
    torch.testing.assert_close(std, logits.std(0, unbiased=False))


def test_mc_dropout_varies_only_with_dropout(records):
    silent = make_model("bt", dropout=0.0)
    with pytest.raises(ValueError, match="no dropout"):
        noise.mc_dropout_probabilities(silent, records)
    model = make_model("gpm", dropout=0.5, dim=4)
    with torch.no_grad():
        model.head.linear.weight.mul_(5)
    probs = noise.mc_dropout_probabilities(model, records, passes=6, seed=0)
    assert probs.shape == (6, 3)
    assert float(probs.std(0).max()) > 1e-3
    torch.testing.assert_close(probs, noise.mc_dropout_probabilities(model, records, passes=6, seed=0))
    assert not model.head.dropout.training or model.training
