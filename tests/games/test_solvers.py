"""Iterative methods: first updates by hand, equivalence with the EGPO repository's SGD losses,
sampled updates unbiased, batches equal single games, convergence."""

import numpy as np
import pytest
import torch

from prefkit.games import (
    METHODS,
    PreferenceGame,
    eta_from_sgd_lr,
    random,
    rock_paper_scissors,
    sgd_lr_from_eta,
)

BETA, ETA = 0.3, 0.5
P4 = random(4, seed=5).P
REF = np.array([0.4, 0.3, 0.2, 0.1])
INIT = np.array([0.1, 0.2, 0.3, 0.4])


def normalized(weights):
    return weights / weights.sum()


def first_policy(method, **options):
    game = PreferenceGame(P4, REF, BETA)
    return game.solve(method, iters=1, eta=ETA, init=INIT, **options).policy


def test_omd_first_step_on_rock_paper_scissors_by_hand():
    # init (1/2, 1/4, 1/4), eta = ln 2, beta = 0: P init = (1/2, 5/8, 3/8), so
    # pi_1 propto (1/2 * 2^(1/2), 1/4 * 2^(5/8), 1/4 * 2^(3/8)).
    result = rock_paper_scissors().solve("omd", iters=1, eta=np.log(2), init=[0.5, 0.25, 0.25])
    expected = normalized(np.array([0.5 * 2**0.5, 0.25 * 2**0.625, 0.25 * 2**0.375]))
    assert np.allclose(result.policy, expected, atol=1e-15)
    assert result.gaps[0] == pytest.approx(2 * (rock_paper_scissors().P @ expected).max() - 1, abs=1e-15)


def test_first_updates_match_the_paper_formulas():
    """Each method's first step, transcribed from EGPO Sec. 3.2 / Nash-MD Eq. 8 with numpy."""
    geometric = INIT ** (1 - ETA * BETA) * REF ** (ETA * BETA)
    omd = normalized(geometric * np.exp(ETA * P4 @ INIT))
    assert np.allclose(first_policy("omd"), omd, atol=1e-14)

    mixture = normalized(geometric)
    nash_md = normalized(mixture * np.exp(ETA * P4 @ mixture))
    assert np.allclose(first_policy("nash_md"), nash_md, atol=1e-14)

    half = omd
    egpo = normalized(geometric * np.exp(ETA * P4 @ half))
    assert np.allclose(first_policy("egpo"), egpo, atol=1e-14)

    h = np.log(INIT / REF)
    step = ETA * 4 * INIT * (BETA * (h - INIT @ h) - (P4 @ INIT - 0.5))
    assert np.allclose(first_policy("online_ipo2"), normalized(INIT * np.exp(-step)), atol=1e-14)

    advantage = P4 @ mixture - BETA * h
    step = ETA * 4 * BETA / 4 * INIT * (advantage - INIT @ advantage)
    assert np.allclose(first_policy("nash_md_pg"), normalized(INIT * np.exp(step)), atol=1e-14)

    mwu_1 = normalized(INIT * np.exp(ETA * P4 @ INIT))  # beta plays no part in MWU
    assert np.allclose(first_policy("mwu"), mwu_1, atol=1e-14)
    mwu_2 = normalized(mwu_1 * np.exp(ETA * P4 @ mwu_1))
    game = PreferenceGame(P4, REF, BETA)
    two = game.solve("mwu", iters=2, eta=ETA, init=INIT, keep_iterates=True)
    assert np.allclose(two.iterates[1], mwu_2, atol=1e-14)
    assert np.allclose(two.policy, (mwu_1 + mwu_2) / 2, atol=1e-14)  # the average iterate


def repo_sgd_step(method, lr, mixture_coef):
    """One torch SGD step on the EGPO repository's tabular losses (algorithms.md Sec. 3.3)."""
    P, log_ref = torch.tensor(P4), torch.log(torch.tensor(REF))
    theta = torch.log(torch.tensor(INIT)).requires_grad_(True)
    n = len(REF)

    def regression(theta, q):
        h = torch.log_softmax(theta, 0) - log_ref
        target = (P @ q).detach()
        diff = (h[:, None] - h[None, :]) - (target[:, None] - target[None, :]) / BETA
        return (diff**2).sum() / n**2

    def mixture(theta):
        log_pi = torch.log_softmax(theta, 0).detach()
        return torch.softmax((1 - mixture_coef * BETA) * log_pi + mixture_coef * BETA * log_ref, 0)

    def grad(loss, theta):
        return torch.autograd.grad(loss, theta)[0]

    pi = torch.softmax(theta, 0).detach()
    if method == "omd":
        g = grad(regression(theta, pi), theta)
    elif method == "nash_md":
        g = grad(regression(theta, mixture(theta)), theta)
    elif method == "egpo":
        half = (theta - lr * grad(regression(theta, pi), theta)).detach()
        g = grad(regression(theta, torch.softmax(half, 0)), theta)
    elif method == "online_ipo2":
        h = torch.log_softmax(theta, 0) - log_ref
        diff = (h[:, None] - h[None, :]) - (P - 0.5) / BETA
        g = grad((pi[:, None] * pi[None, :] * diff**2).sum(), theta)
    elif method == "nash_md_pg":
        log_pi = torch.log_softmax(theta, 0)
        advantage = P @ mixture(theta) - BETA * (log_pi.detach() - log_ref)
        g = grad(-(pi * advantage * log_pi).sum(), theta)
    return torch.softmax(theta - lr * g, 0).detach().numpy()


@pytest.mark.parametrize("method", ["omd", "nash_md", "egpo", "online_ipo2", "nash_md_pg"])
def test_one_sgd_step_of_the_repository_loss_is_one_step_at_eta(method):
    """SGD with lr on the online-IPO losses == our step at eta = 4 lr / (N beta)."""
    lr = 0.02
    eta = eta_from_sgd_lr(lr, 4, BETA)
    assert sgd_lr_from_eta(eta, 4, BETA) == pytest.approx(lr)
    # The repository forms Nash-MD's mixture with true_lr = 2 lr / (N beta) = eta / 2.
    repo = repo_sgd_step(method, lr, mixture_coef=eta / 2)
    ours = PreferenceGame(P4, REF, BETA).solve(method, 1, eta, init=INIT, **(
        {"mixture_eta": eta / 2} if method.startswith("nash_md") else {}))
    assert np.allclose(ours.policy, repo, atol=1e-12)


@pytest.mark.parametrize("method", METHODS)
def test_sampled_first_step_is_unbiased(method):
    """Average the sampled first step over 4000 copies of one game (independent draws)."""
    copies, samples, eta = 4000, 10, 0.2
    single = PreferenceGame(P4, REF, BETA)
    batch = PreferenceGame(np.broadcast_to(P4, (copies, 4, 4)), REF, BETA)
    init = np.broadcast_to(INIT, (copies, 4))
    sampled = batch.solve(method, 1, eta, samples=samples, seed=1, init=init).policy
    exact = single.solve(method, 1, eta, init=INIT).policy
    # Centred log-policies are linear in the logit increment (the normaliser cancels).
    def centred(log_pi):
        return log_pi - log_pi.mean(axis=-1, keepdims=True)
    increments = centred(np.log(sampled)) - centred(np.log(INIT))
    expected = centred(np.log(exact)) - centred(np.log(INIT))
    mean = increments.mean(axis=0)
    stderr = increments.std(axis=0) / np.sqrt(copies)
    assert stderr.max() > 0  # the draws are really random
    assert stderr.max() < 0.1 * np.abs(expected).max()  # resolution enough to see a wrong mean
    # (EGPO's second step is unbiased given its sampled half-step; the O(eta^2 var) bias that the
    # half-step's noise leaves is below this resolution.)
    assert np.all(np.abs(mean - expected) <= 5 * stderr), (mean, expected, stderr)


def test_sampling_is_reproducible_by_seed():
    game = random(5, seed=0, beta=0.1, ref="random")
    a = game.solve("egpo", 20, 0.4, samples=7, seed=3).policy
    b = game.solve("egpo", 20, 0.4, samples=7, seed=3).policy
    c = game.solve("egpo", 20, 0.4, samples=7, seed=4).policy
    assert np.array_equal(a, b) and not np.array_equal(a, c)


@pytest.mark.parametrize("method", METHODS)
def test_a_batch_solves_each_game_as_if_alone(method):
    batch = random(6, seed=9, games=3, beta=0.05, ref="random")
    together = batch.solve(method, 40, eta=0.5)
    assert together.gaps.shape == (3, 40) and together.policy.shape == (3, 6)
    for g in range(3):
        alone = batch[g].solve(method, 40, eta=0.5)
        assert np.allclose(alone.gaps, together.gaps[g], rtol=1e-12, atol=1e-15)
        assert np.allclose(alone.policy, together.policy[g], atol=1e-15)


def test_egpo_and_omd_converge_to_the_equilibrium():
    game = random(10, seed=0, beta=0.1, ref="random")
    pi_star, _ = game.nash()
    for method in ("egpo", "omd"):
        result = game.solve(method, 1000, eta=0.4)
        assert result.final_gap < 1e-10
        assert np.abs(result.policy - pi_star).max() < 1e-6
        assert result.iterations_to(1e-6) > 0


def test_constant_step_nash_md_is_biased_and_the_decaying_step_is_not():
    game = random(10, seed=0, beta=0.1, ref="random")
    constant = game.solve("nash_md", 3000, eta=0.4)
    assert constant.gaps[-1] > 1e-6 and abs(constant.gaps[-1] - constant.gaps[-2]) < 1e-12
    decay = game.solve("nash_md", 3000, schedule="decay")
    assert decay.final_gap < constant.final_gap / 10


def test_mwu_average_iterate_approaches_equilibrium_of_rock_paper_scissors():
    result = rock_paper_scissors().solve("mwu", 4000, eta=0.1, init=[0.6, 0.3, 0.1])
    assert result.final_gap < 0.01 < result.gaps[10]
    assert np.abs(result.policy - 1 / 3).max() < 0.01


def test_iterations_to_threshold():
    game = random(4, seed=1, games=2, beta=0.1)
    result = game.solve("egpo", 300, eta=0.4)
    reached = result.iterations_to(1e-8)
    for g in range(2):
        t = reached[g]
        assert result.gaps[g, t - 1] <= 1e-8 and np.all(result.gaps[g, : t - 1] > 1e-8)
    assert np.array_equal(result.iterations_to(-1.0), [-1, -1])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"method": "sgd", "eta": 0.1}, "unknown method"),
        ({"method": "omd"}, "eta"),
        ({"method": "omd", "eta": -1.0}, "eta must be"),
        ({"method": "omd", "eta": 20.0}, "eta \\* beta"),
        ({"method": "omd", "eta": 0.1, "iters": 0}, "iters"),
        ({"method": "omd", "eta": 0.1, "samples": 0}, "samples"),
        ({"method": "nash_md", "eta": 0.1, "schedule": "decay"}, "do not pass eta"),
        ({"method": "nash_md", "schedule": "cosine", "eta": 0.1}, "schedule"),
        ({"method": "omd", "eta": 0.1, "mixture_eta": 0.05}, "mixture_eta"),
        ({"method": "omd", "eta": 0.1, "init": [1.0, 0.0, 0.0, 0.0]}, "full support"),
    ],
)
def test_bad_solver_arguments(kwargs, message):
    game = PreferenceGame(P4, REF, beta=0.1)
    kwargs.setdefault("iters", 5)
    with pytest.raises(ValueError, match=message):
        game.solve(**kwargs)


def test_methods_that_need_beta():
    with pytest.raises(ValueError, match="beta > 0"):
        rock_paper_scissors().solve("nash_md_pg", 5, eta=0.1)
    with pytest.raises(ValueError, match="beta > 0"):
        rock_paper_scissors().solve("nash_md", 5, schedule="decay")
    with pytest.raises(ValueError, match="beta > 0"):
        eta_from_sgd_lr(0.1, 10, 0.0)
