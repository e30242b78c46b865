"""Neural variant: with a tabular policy, SGD on prefkit.losses equals PreferenceGame.solve."""

import numpy as np
import pytest
import torch

from prefkit.games import PreferenceGame, eta_from_sgd_lr, random
from prefkit.games.neural import NEURAL_METHODS, train_neural


@pytest.mark.parametrize("method", NEURAL_METHODS)
def test_tabular_policy_trained_with_online_ipo_equals_the_mirror_step(method):
    game = random(6, seed=2, games=2, beta=0.2, ref="random")
    lr = 0.03
    neural = train_neural(game, method, 15, lr, architecture="tabular")
    exact = game.solve(method, 15, eta_from_sgd_lr(lr, 6, 0.2))
    assert np.abs(neural.policy - exact.policy).max() < 1e-13
    assert np.abs(neural.gaps - exact.gaps).max() < 1e-13


def test_repository_mixture_step_is_passed_through():
    game = random(5, seed=0, beta=0.1, ref="random")
    lr = 0.02
    eta = eta_from_sgd_lr(lr, 5, 0.1)
    neural = train_neural(game, "nash_md", 10, lr, architecture="tabular", mixture_eta=eta / 2)
    exact = game.solve("nash_md", 10, eta, mixture_eta=eta / 2)
    assert np.abs(neural.policy - exact.policy).max() < 1e-13


@pytest.mark.parametrize("method", ["omd", "egpo", "online_ipo2", "nash_md_pg"])
def test_sampled_tabular_step_is_unbiased(method):
    copies = 3000
    P = random(4, seed=1).P
    ref = np.array([0.4, 0.3, 0.2, 0.1])
    batch = PreferenceGame(np.broadcast_to(P, (copies, 4, 4)), ref, 0.3)
    sampled = train_neural(batch, method, 1, 0.05, samples=8, architecture="tabular").policy
    exact = train_neural(PreferenceGame(P, ref, 0.3), method, 1, 0.05, architecture="tabular").policy
    centred = np.log(sampled) - np.log(sampled).mean(axis=1, keepdims=True)
    expected = np.log(exact) - np.log(exact).mean()
    stderr = centred.std(axis=0) / np.sqrt(copies)
    assert np.all(np.abs(centred.mean(axis=0) - expected) <= 5 * stderr + 1e-12)


def test_mlp_egpo_lowers_the_exact_gap_and_reports_it_exactly():
    torch.manual_seed(0)
    game = random(20, seed=3, beta=0.05)
    result = train_neural(game, "egpo", 150, 0.02, seed=1)
    assert result.gaps.shape == (150,)
    # The reported gap is the exact gap of the network's policy in the game it was trained on
    # (whose reference is the network's initial policy).
    assert result.game.duality_gap(result.policy) == pytest.approx(result.final_gap, rel=1e-9)
    assert not np.allclose(result.game.ref, game.ref)
    assert result.final_gap < 0.25 * result.gaps[0]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"method": "mwu"}, "unknown method"),
        ({"method": "omd", "lr": 0.0}, "lr"),
        ({"method": "omd", "samples": 0}, "samples"),
        ({"method": "omd", "architecture": "transformer"}, "architecture"),
    ],
)
def test_bad_arguments(kwargs, message):
    kwargs = {"iters": 2, "lr": 0.01, **kwargs}
    with pytest.raises(ValueError, match=message):
        train_neural(random(4, beta=0.1), **kwargs)
    with pytest.raises(ValueError, match="beta > 0"):
        train_neural(random(4), "omd", 2, 0.01)
