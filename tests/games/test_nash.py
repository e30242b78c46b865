"""Nash equilibria: the LP against brute-force support enumeration; the regularised solver."""

import itertools

import numpy as np
import pytest

from prefkit.games import PreferenceGame, random, rock_paper_scissors


def support_enumeration(P: np.ndarray) -> list[np.ndarray]:
    """Every symmetric equilibrium found by trying each support S (small N only).

    On S the equaliser equations (P - 1/2)_{SS} pi_S = 0, sum pi_S = 1 must hold, pi_S >= 0, and
    no action may beat pi: max_i ((P - 1/2) pi)_i <= 0.
    """
    n = P.shape[0]
    skew = P - 0.5
    found = []
    for size in range(1, n + 1):
        for support in itertools.combinations(range(n), size):
            s = list(support)
            system = np.vstack([skew[np.ix_(s, s)], np.ones((1, size))])
            rhs = np.r_[np.zeros(size), 1.0]
            x, *_ = np.linalg.lstsq(system, rhs, rcond=None)
            if np.abs(system @ x - rhs).max() > 1e-10 or x.min() < -1e-12:
                continue
            pi = np.zeros(n)
            pi[s] = x
            if (skew @ pi).max() <= 1e-10:
                found.append(pi)
    return found


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("n", [3, 4, 5, 6])
def test_lp_equilibrium_equals_support_enumeration(n, seed):
    game = random(n, seed=seed)
    pi, value = game.nash()
    brute = support_enumeration(game.P)
    assert len(brute) == 1  # generic random games have a unique equilibrium
    assert np.abs(pi - brute[0]).max() < 1e-9
    assert value == pytest.approx(0.5, abs=1e-9)
    assert game.duality_gap(pi) <= 1e-9


def test_rock_paper_scissors_is_uniform():
    pi, value = rock_paper_scissors().nash()
    assert np.allclose(pi, 1 / 3, atol=1e-12)
    assert value == pytest.approx(0.5, abs=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_lp_equilibrium_gap_on_larger_games(seed):
    game = random(30, seed=seed)
    pi, _ = game.nash()
    assert game.duality_gap(pi) <= 1e-9
    assert pi.min() >= 0 and abs(pi.sum() - 1) < 1e-12


@pytest.mark.parametrize("beta", [0.001, 0.01, 0.1, 1.0, 10.0])
def test_regularized_equilibrium_is_the_best_response_fixed_point(beta):
    game = random(10, seed=11, games=4, beta=beta, ref="random")
    pi, value = game.nash()
    assert pi.shape == (4, 10) and value == pytest.approx(np.full(4, 0.5), abs=1e-12)
    assert game.duality_gap(pi).max() <= 1e-10
    assert np.abs(game.best_response(pi) - pi).max() < 1e-9


def test_regularized_equilibrium_tends_to_the_plain_one_as_beta_vanishes():
    plain, _ = random(6, seed=2).nash()
    close, _ = random(6, seed=2, beta=1e-4).nash()
    assert np.abs(plain - close).max() < 5e-3
    # With beta large, the equilibrium is essentially the reference policy.
    ref = np.array([0.1, 0.2, 0.3, 0.15, 0.15, 0.1])
    far, _ = PreferenceGame(random(6, seed=2).P, ref, beta=1e4).nash()
    assert np.abs(far - ref).max() < 1e-4
