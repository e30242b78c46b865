"""Game generators and the Nash-MD paper's analytic examples."""

import numpy as np
import pytest

from prefkit.games import PRESETS, from_utilities, perturbed_cycle, preset, random


def test_random_game_structure_and_seed():
    game = random(6, seed=4)
    P = game.P
    below = np.tril_indices(6, k=-1)
    # Lower-triangle entries are the free U(0, 1) draws (EGPO's gen_preference_matrix).
    draws = np.random.default_rng(4).random((6, 6))
    assert np.array_equal(P[below], draws[below])
    assert np.array_equal(P + P.T, np.ones((6, 6)))
    assert np.array_equal(random(6, seed=4).P, P) and not np.array_equal(random(6, seed=5).P, P)
    assert np.allclose(game.ref, 1 / 6)


def test_random_batch_and_random_reference():
    batch = random(5, seed=0, games=7, beta=0.01, ref="random")
    assert batch.P.shape == (7, 5, 5) and batch.ref.shape == (7, 5)
    assert np.allclose(batch.ref.sum(axis=1), 1) and batch.beta == 0.01
    assert len({tuple(r) for r in batch.ref}) == 7  # one reference per game
    with pytest.raises(ValueError, match="ref must be"):
        random(5, ref="gaussian")


@pytest.mark.parametrize("eps", [-1 / 3, -0.2, 0.0, 0.1, 0.25, 1 / 3])
def test_perturbed_cycle_equilibrium_is_the_papers(eps):
    """Nash-MD Sec. 3.2: pi* = (1/3 + eps/2, 1/3 + eps/2, 1/3 - eps)."""
    pi, value = perturbed_cycle(eps).nash()
    assert np.allclose(pi, [1 / 3 + eps / 2, 1 / 3 + eps / 2, 1 / 3 - eps], atol=1e-10)
    assert value == pytest.approx(0.5, abs=1e-12)


def test_perturbed_cycle_rejects_impossible_weights():
    with pytest.raises(ValueError, match="eps"):
        perturbed_cycle(0.4)


def test_elo_maximiser_loses_to_the_preference_maximiser_50_over_99():
    """Nash-MD App. A: utilities (0, log 9, log 2) under the constraint pi(y1) = 2 pi(y2)."""
    game = from_utilities([0.0, np.log(9.0), np.log(2.0)])
    elo_best = np.array([2 / 3, 1 / 3, 0.0])   # maximises the expected utility on the constraint
    pref_best = np.array([0.0, 0.0, 1.0])
    assert game.win_rate(pref_best, elo_best) == pytest.approx(50 / 99, abs=1e-15)
    # (0, 0, 1) beats or ties every policy (2a, a, 1 - 3a) of the constrained family.
    for a in np.linspace(0, 1 / 3, 101):
        assert game.win_rate(pref_best, [2 * a, a, 1 - 3 * a]) >= 0.5 - 1e-15


def test_from_utilities_is_bradley_terry_and_transitive():
    game = from_utilities([0.0, 1.0, 3.0])
    assert game.P[2, 0] == pytest.approx(1 / (1 + np.exp(-3.0)), abs=1e-15)
    pi, _ = game.nash()
    assert np.allclose(pi, [0, 0, 1], atol=1e-12)  # the top item is a Condorcet winner
    batch = from_utilities(np.array([[0.0, 1.0], [1.0, 0.0]]))
    assert batch.P.shape == (2, 2, 2)


def test_presets():
    for name in PRESETS:
        assert preset(name, beta=0.1).beta == 0.1
    with pytest.raises(ValueError, match="unknown preset"):
        preset("chess")


@pytest.mark.parametrize("tau", [0.1, 1.0])
def test_nash_md_last_iterate_bound(tau):
    """Munos et al. 2024, Thm 1: eta_t = 2 / (tau (t + 2)) gives KL(pi*, pi_T) <= 8 / (tau^2 (T + 1))."""
    games = random(10, seed=21, games=5, beta=tau, ref="random")
    pi_star, _ = games.nash()
    result = games.solve("nash_md", 500, schedule="decay", keep_iterates=True)
    kl = (pi_star * (np.log(pi_star) - np.log(result.iterates))).sum(axis=-1)  # [T, G]
    T = np.arange(1, 501)[:, None]
    assert np.all(kl <= 8 / (tau**2 * (T + 1)))
    assert kl[-1].max() < kl[0].max()
