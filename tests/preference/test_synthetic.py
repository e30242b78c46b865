"""Synthetic cyclic sets and the exact scalar ceiling (checked against brute force)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from prefkit.preference.synthetic import (
    best_ordering_accuracy,
    cyclic_tournament,
    feature_pairs,
    lexicographic,
    sample_type_pairs,
    text_pairs,
    win_counts,
)


def brute_force(wins: np.ndarray) -> float:
    n = len(wins)
    best = 0.0
    for order in itertools.permutations(range(n)):
        rank = {t: i for i, t in enumerate(order)}
        right = sum(wins[i, j] for i in range(n) for j in range(n) if i != j and rank[i] < rank[j])
        best = max(best, right)
    return best / (wins.sum() - np.trace(wins))


def test_cycles_and_their_bounds():
    three = cyclic_tournament(3)
    assert three.tolist() == [[0, 1, 0], [0, 0, 1], [1, 0, 0]]
    assert best_ordering_accuracy(three) == pytest.approx(2 / 3)
    assert best_ordering_accuracy(cyclic_tournament(5)) == pytest.approx(0.7)
    transitive = np.triu(np.ones((4, 4)), 1)
    assert best_ordering_accuracy(transitive) == 1.0
    mixed = lexicographic(3, 3)
    assert mixed.sum() == 36 and best_ordering_accuracy(mixed) == pytest.approx((27 + 6) / 36)
    with pytest.raises(ValueError, match="odd"):
        cyclic_tournament(4)


def test_dynamic_programme_equals_brute_force():
    rng = np.random.default_rng(0)
    for n in (3, 4, 5, 6):
        for _ in range(3):
            wins = rng.integers(0, 5, size=(n, n)).astype(float)
            np.fill_diagonal(wins, 0)
            assert best_ordering_accuracy(wins) == pytest.approx(brute_force(wins))


def test_balanced_samples_and_text_pairs():
    beats = cyclic_tournament(3)
    rng = np.random.default_rng(0)
    winners, losers = sample_type_pairs(beats, 30, rng, balanced=True)
    assert win_counts(winners, losers, 3).tolist() == [[0, 10, 0], [0, 0, 10], [10, 0, 0]]
    assert all(beats[w, lo] for w, lo in zip(winners, losers))
    records, w, lo = text_pairs(beats, 6, rng, type_words=[["rock"], ["scissors"], ["paper"]],
                                filler_words=["x", "y"], prompts=["p"], balanced=True)
    words = {0: "rock", 1: "scissors", 2: "paper"}
    for r, a, b in zip(records, w, lo):
        assert words[a] in r.chosen.split() and words[b] in r.rejected.split()
    data = feature_pairs(beats, 6, rng, filler=np.zeros((2, 4)), prompts=np.ones((3, 2)))
    assert data["chosen"].shape == (6, 7) and data["prompts"].shape == (6, 2)
    assert data["chosen"][:, :3].argmax(1).tolist() == data["winner"].tolist()
    with pytest.raises(ValueError, match="multiple of 3"):
        sample_type_pairs(beats, 4, rng, balanced=True)


def test_gpm_learns_a_held_out_cycle_that_bradley_terry_cannot(tmp_path):
    import torch

    from prefkit.config import RunConfig, load
    from prefkit.engine.preference.data import tensor_pair_data
    from prefkit.engine.preference.train import fit
    from prefkit.preference import FeatureBackbone, build_head, build_model

    beats = cyclic_tournament(3)
    rng = np.random.default_rng(0)
    pools = [(rng.normal(size=(32, 4)), rng.normal(size=(32, 2))) for _ in range(2)]
    train = feature_pairs(beats, 900, rng, filler=pools[0][0], prompts=pools[0][1])
    test = feature_pairs(beats, 900, rng, filler=pools[1][0], prompts=pools[1][1], balanced=True)
    accuracy = {}
    for kind in ("bt", "gpm"):
        torch.manual_seed(0)
        backbone = FeatureBackbone(2 + 3 + 4, hidden=32, layers=2, prompt_dim=2)
        model = build_model(kind, backbone, build_head(kind, 32, dim=2, tau=0.1))
        cfg = load(RunConfig, None, [f"out={tmp_path / kind}", "train.steps=150", "train.batch_size=64",
                                     "train.lr=0.003", "train.log_every=1000"])
        fit(cfg, model, tensor_pair_data(backbone, train["prompts"], train["chosen"], train["rejected"]))
        accuracy[kind] = float((model.prob(test["prompts"], test["chosen"], test["rejected"]) > 0.5).float().mean())
    assert accuracy["gpm"] >= 0.98
    assert accuracy["bt"] <= 2 / 3 + 0.02  # the scalar ceiling on a balanced 3-cycle, plus sampling slack
