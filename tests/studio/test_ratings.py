"""The arena leaderboard: BT worked numbers, bootstrap intervals, ranks, cycles, GPM, Nash."""

from __future__ import annotations

import numpy as np
import pytest

from prefkit.studio.ratings import SCALE, as_json, bt_fit, find_cycles, leaderboard


def test_bt_two_models_worked_example():
    # 3 wins and 1 loss: the MLE gap is log 3 (natural units), 400 log10(3) = 190.85 Elo.
    board = leaderboard([("x", "y", "a")] * 3 + [("x", "y", "b")], n_boot=0)
    i, j = board.models.index("x"), board.models.index("y")
    assert board.rating[i] - board.rating[j] == pytest.approx(400 * np.log10(3), abs=0.05)
    assert board.rating.mean() == pytest.approx(1000)


def test_a_tie_is_half_a_win_and_both_bad_is_a_tie():
    tie = leaderboard([("x", "y", "a"), ("x", "y", "tie")], n_boot=0)
    bad = leaderboard([("x", "y", "a"), ("x", "y", "both_bad")], n_boot=0)
    # 1.5 wins of 2: gap log(1.5 / 0.5) = log 3
    assert tie.rating[0] - tie.rating[1] == pytest.approx(SCALE * np.log(3), abs=0.05)
    assert np.allclose(tie.rating, bad.rating)


def test_bt_fit_weights_are_counts():
    rows = np.array([[0, 1, 1.0], [0, 1, 0.0]])
    r = bt_fit(rows, np.array([4.0, 1.0]), 2)
    assert r[0] - r[1] == pytest.approx(np.log(4), abs=1e-3)


def test_bootstrap_intervals_ranks_and_win_rates():
    rng = np.random.default_rng(0)
    strength = {"a": 1.0, "b": 0.0, "c": -1.0, "d": -1.05}
    battles = []
    for _ in range(600):
        x, y = rng.choice(list(strength), 2, replace=False)
        p = 1 / (1 + np.exp(strength[y] - strength[x]))
        battles.append((x, y, "a" if rng.random() < p else "b"))
    board = leaderboard(battles, n_boot=50)
    order = [board.models[i] for i in board.order()]
    assert order[:2] == ["a", "b"]
    assert np.all(board.ci_lo <= board.rating) and np.all(board.rating <= board.ci_hi)
    ranks = {board.models[i]: int(board.rank[i]) for i in range(4)}
    assert ranks["a"] == 1 and ranks["b"] == 2 and ranks["c"] == ranks["d"] == 3  # c, d overlap
    assert board.counts.sum() == 2 * 600 and np.allclose(board.wins + board.wins.T, board.counts)
    assert board.cycles == [] and board.gpm_prob is None
    rows = as_json(board)["models"]
    assert [r["model"] for r in rows] == order and all(r["ci_lo"] <= r["rating"] <= r["ci_hi"] for r in rows)


def test_cycles_are_detected_and_the_gpm_view_fits_them():
    beats = {("rock", "scissors"), ("scissors", "paper"), ("paper", "rock")}
    battles = []
    for x, y in [("rock", "scissors"), ("scissors", "paper"), ("paper", "rock")] * 30:
        battles += [(x, y, "a")] * 4 + [(y, x, "a")]
    board = leaderboard(battles, n_boot=10)
    assert len(board.cycles) == 1 and set(board.cycles[0]) == {"rock", "paper", "scissors"}
    index = {m: i for i, m in enumerate(board.models)}
    for x, y in beats:
        assert board.gpm_prob[index[x], index[y]] > 0.7  # BT cannot: all three ratings are equal
    assert np.allclose(board.rating, 1000, atol=1)
    assert np.allclose(board.nash, 1 / 3, atol=0.05)


def test_find_cycles_on_a_transitive_relation():
    rate = np.array([[np.nan, 0.8, 0.9], [0.2, np.nan, 0.7], [0.1, 0.3, np.nan]])
    assert find_cycles(rate, ["a", "b", "c"]) == []


def test_no_battles():
    assert leaderboard([]) is None
    assert leaderboard([("x", "x", "a")]) is None
