"""PreferenceGame: input validation, best responses and the exact duality gap."""

import numpy as np
import pytest

from prefkit.games import PreferenceGame, random, rock_paper_scissors

RPS = rock_paper_scissors().P


@pytest.mark.parametrize(
    ("P", "message"),
    [
        (np.full((2, 3), 0.5), "square"),
        (np.full((2, 2, 2, 2), 0.5), "square"),
        ([[0.5, 1.2], [-0.2, 0.5]], r"\[0, 1\]"),
        ([[0.5, 0.7], [0.7, 0.5]], r"P \+ P.T == 1"),
        ([[0.6, 0.3], [0.7, 0.4]], "diagonal"),
        ([[0.5, np.nan], [np.nan, 0.5]], "NaN"),
        ("not a matrix", "numeric"),
    ],
)
def test_bad_preferences_are_rejected_with_a_clear_message(P, message):
    with pytest.raises(ValueError, match=message):
        PreferenceGame(P)


@pytest.mark.parametrize(
    ("ref", "beta", "message"),
    [
        ([0.5, 0.5], 0.1, "shape"),
        ([0.5, 0.5, 0.0], 0.1, "strictly positive"),
        ([0.5, 0.6, 0.1], 0.1, "sum to 1"),
        (None, -0.1, "beta"),
        (None, float("inf"), "beta"),
    ],
)
def test_bad_reference_or_beta_is_rejected(ref, beta, message):
    with pytest.raises(ValueError, match=message):
        PreferenceGame(RPS, ref, beta)


def test_bad_policy_is_rejected():
    game = PreferenceGame(RPS)
    with pytest.raises(ValueError, match="shape"):
        game.duality_gap([0.5, 0.5])
    with pytest.raises(ValueError, match="sum to 1"):
        game.duality_gap([0.5, 0.5, 0.5])


def test_unregularized_gap_is_twice_the_best_pure_advantage():
    game = PreferenceGame(RPS)
    pi = np.array([0.5, 0.25, 0.25])
    # P pi = (0.25 + 0.25, 0.5 + 0.125, 0.125 + 0.25): paper (0.625) is the best reply.
    assert game.duality_gap(pi) == pytest.approx(2 * 0.625 - 1, abs=1e-15)
    assert np.array_equal(game.best_response(pi), [0.0, 1.0, 0.0])
    assert game.duality_gap(np.full(3, 1 / 3)) == pytest.approx(0.0, abs=1e-15)


@pytest.mark.parametrize("beta", [0.05, 0.3, 2.0])
def test_regularized_gap_matches_its_definition(beta):
    """gap(pi) = max_p J(p, pi) - min_q J(pi, q), with the closed-form best reply as argmax."""
    game = random(6, seed=3, beta=beta, ref="random")
    rng = np.random.default_rng(0)
    pi = rng.dirichlet(np.ones(6))
    reply = game.best_response(pi)
    # The game is symmetric (P + P^T = 1), so pi's worst opponent is also its best reply.
    direct = game.payoff(reply, pi) - game.payoff(pi, reply)
    assert game.duality_gap(pi) == pytest.approx(direct, rel=1e-12, abs=1e-14)
    # No policy does better than the closed-form reply (it is the argmax).
    for _ in range(200):
        other = rng.dirichlet(np.ones(6) * 0.5)
        assert game.payoff(other, pi) <= game.payoff(reply, pi) + 1e-12
        assert game.payoff(pi, other) >= game.payoff(pi, reply) - 1e-12


def test_gap_is_zero_at_the_fixed_point_and_positive_elsewhere():
    game = random(5, seed=1, beta=0.2, ref="random")
    pi, _ = game.nash()
    assert game.duality_gap(pi) < 1e-12
    assert np.allclose(game.best_response(pi), pi, atol=1e-12)
    assert game.duality_gap(game.ref) > 1e-3


def test_batch_matches_single_games():
    batch = random(4, seed=7, games=3, beta=0.1, ref="random")
    pi = np.random.default_rng(1).dirichlet(np.ones(4), size=3)
    gaps = batch.duality_gap(pi)
    assert gaps.shape == (3,)
    for g in range(3):
        assert batch[g].duality_gap(pi[g]) == pytest.approx(gaps[g], rel=1e-14)
    restacked = PreferenceGame.stack([batch[g] for g in range(3)])
    assert np.array_equal(restacked.P, batch.P) and np.array_equal(restacked.ref, batch.ref)


def test_stack_rejects_mismatched_games():
    with pytest.raises(ValueError, match="share N and beta"):
        PreferenceGame.stack([random(3, beta=0.1), random(4, beta=0.1)])
    with pytest.raises(ValueError, match="share N and beta"):
        PreferenceGame.stack([random(3, beta=0.1), random(3, beta=0.2)])
