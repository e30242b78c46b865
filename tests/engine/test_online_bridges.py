"""Bridges: the online engine on a one-token policy over N actions is the tabular game solver.

With ``max_new_tokens=1`` a response is one action, so the engine's policy is the tabular
softmax policy of ``prefkit.games``. Driving the real online step (sampling, judge, rows,
registry loss, backward, EGPO's half step) with plain SGD at the learning rate that matches the
mirror step ``eta`` reproduces ``PreferenceGame.solve`` trajectories up to Monte-Carlo error;
each test also checks that the neighbouring method's trajectory is clearly farther away, so it
could fail.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from prefkit.engine import RunSession, TrainData
from prefkit.engine.methods import get_method
from prefkit.engine.online.train import build_online_run
from prefkit.games import PreferenceGame

from .online_toys import PROMPT, MatrixJudge, one_token_policy, random_game, toy_config

N, BETA, ETA, STEPS = 4, 0.25, 3.0, 3
"""A random 4-action game where EGPO and OMD (and Nash-MD's mixtures) separate within 3 steps."""


def gradients(session, setup, optimizer, step):
    """The driver's gradient of one step on the unwrapped model: ``(metrics, tokens)``."""
    _, metrics, tokens, _ = session.gradients(setup.shape, setup.policy.model, optimizer, step)
    return metrics, tokens


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max())
    return e / e.sum()


def _setup():
    P = random_game(N, seed=4)
    rng = np.random.default_rng(14)
    ref_logits, init_logits = rng.normal(size=N), rng.normal(size=N) * 1.5
    return P, ref_logits, init_logits


def _engine_trajectory(tmp_path, method, lr, prompts, overrides, P, ref_logits, init_logits):
    policy, reference = one_token_policy(init_logits), one_token_policy(ref_logits)
    cfg = toy_config(tmp_path, method, f"loss.beta={BETA}", f"online.prompts_per_step={prompts}",
                     f"train.steps={STEPS}", *overrides)
    setup = build_online_run(session := RunSession.start(cfg), get_method(method), data=TrainData(prompts=[PROMPT] * prompts),
                             policy=policy, reference=reference, judge=MatrixJudge(P))
    optimizer = torch.optim.SGD(policy.model.parameters(), lr=lr)
    trajectory = []
    for step in range(STEPS):
        gradients(session, setup, optimizer, step)  # what optimize() does around it: the step, then zero_grad
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        trajectory.append(policy.model.probs())
    return np.array(trajectory), setup


def _games(P, ref_logits, init_logits, method, **kwargs):
    game = PreferenceGame(P, ref=_softmax(ref_logits), beta=BETA)
    return game.solve(method, iters=STEPS, eta=ETA, init=_softmax(init_logits), keep_iterates=True, **kwargs).iterates


# y, y' uniform (temperature -> infinity) in disjoint random pairs of distinct actions: the expected
# gradient is N/(N-1) times the games' loss over all N^2 ordered pairs (whose y = y' terms vanish),
# so the SGD learning rate is the games' eta N beta / 4 times (N-1)/N.
REGRESSION = ["online.samples_per_prompt=8", "online.opponents=4", "online.pairing=random", "online.temperature=1e6"]
REGRESSION_LR = ETA * N * BETA / 4 * (N - 1) / N


def test_egpo_on_a_one_token_policy_follows_the_games_egpo_trajectory(tmp_path):
    P, ref_logits, init_logits = _setup()
    got, setup = _engine_trajectory(tmp_path, "egpo", REGRESSION_LR, 600, REGRESSION, P, ref_logits, init_logits)
    egpo = _games(P, ref_logits, init_logits, "egpo")
    omd = _games(P, ref_logits, init_logits, "omd")
    assert np.abs(got - egpo).max() < 0.035
    assert np.abs(got[0] - omd[0]).max() > 0.09  # the half step matters: not online mirror descent
    # two rounds of opponents per step: K samples x M opponents, twice, per prompt
    assert setup.judge.queries <= STEPS * 600 * 2 * 8 * 4


def test_online_ipo_on_a_one_token_policy_follows_online_mirror_descent(tmp_path):
    P, ref_logits, init_logits = _setup()
    got, _ = _engine_trajectory(tmp_path, "online_ipo", REGRESSION_LR, 600, REGRESSION, P, ref_logits, init_logits)
    omd = _games(P, ref_logits, init_logits, "omd")
    egpo = _games(P, ref_logits, init_logits, "egpo")
    assert np.abs(got - omd).max() < 0.035
    assert np.abs(got[0] - egpo[0]).max() > 0.09


def test_nash_md_pg_on_a_one_token_policy_follows_the_games_nash_md_pg_trajectory(tmp_path):
    # Nash-MD-PG: E[-(P(y > y') - 1/2 - beta h(y)) grad log pi(y)] is the games' exact policy
    # gradient, so lr = eta N beta / 4; a token-level mixture of a one-token policy is the exact
    # geometric mixture, with coefficient coef = mixture_eta * beta.
    P, ref_logits, init_logits = _setup()
    coef = 0.25
    got, _ = _engine_trajectory(tmp_path, "nash_md", ETA * N * BETA / 4, 500,
                                [f"online.mixture_coef={coef}", "online.samples_per_prompt=4"], P, ref_logits,
                                init_logits)
    expected = _games(P, ref_logits, init_logits, "nash_md_pg", mixture_eta=coef / BETA)
    other_mixture = _games(P, ref_logits, init_logits, "nash_md_pg", mixture_eta=1.0 / BETA)
    assert np.abs(got - expected).max() < 0.01
    assert np.abs(expected - other_mixture).max() > 0.05


@pytest.mark.parametrize("coef, opponent", [(0.0, "policy"), (1.0, "reference")])
def test_nash_md_mixture_zero_is_self_play_and_one_a_best_response_to_the_reference(tmp_path, coef, opponent):
    """One step from the same point, against the hand-written policy gradient with the opponent
    q = pi (self-play) or q = pi_ref (best response): log pi' = log pi + lr pi (a - <pi, a>),
    a = P q - beta (log pi - log pi_ref)."""
    P, ref_logits, init_logits = _setup()
    lr = 1.5
    policy, reference = one_token_policy(init_logits), one_token_policy(ref_logits)
    cfg = toy_config(tmp_path, "nash_md", f"loss.beta={BETA}", "online.prompts_per_step=1500",
                     "online.samples_per_prompt=4", f"online.mixture_coef={coef}", "train.steps=1")
    setup = build_online_run(session := RunSession.start(cfg), get_method("nash_md"), data=TrainData(prompts=[PROMPT] * 1500),
                             policy=policy, reference=reference, judge=MatrixJudge(P))
    optimizer = torch.optim.SGD(policy.model.parameters(), lr=lr)
    gradients(session, setup, optimizer, 0)
    optimizer.step()

    pi, ref = _softmax(init_logits), _softmax(ref_logits)
    q = pi if opponent == "policy" else ref
    wrong = ref if opponent == "policy" else pi
    logits = {}
    for name, opp in (("right", q), ("wrong", wrong)):
        a = P @ opp - BETA * (np.log(pi) - np.log(ref))
        logits[name] = _softmax(np.log(pi) + lr * pi * (a - pi @ a))
    got = policy.model.probs()
    assert np.abs(got - logits["right"]).max() < 0.01
    assert np.abs(logits["right"] - logits["wrong"]).max() > 0.05


def test_egpo_half_step_restores_parameters_and_optimizer_state(tmp_path):
    """After EGPO's step function the model is back at theta_t and AdamW's moments and step count
    are those from before the half step; the gradient left is the one with the refreshed targets."""
    P, ref_logits, init_logits = _setup()
    policy, reference = one_token_policy(init_logits), one_token_policy(ref_logits)
    cfg = toy_config(tmp_path, "egpo", f"loss.beta={BETA}", "online.prompts_per_step=50", "train.steps=3")
    setup = build_online_run(session := RunSession.start(cfg), get_method("egpo"), data=TrainData(prompts=[PROMPT] * 50),
                             policy=policy, reference=reference, judge=MatrixJudge(P))
    optimizer = torch.optim.AdamW(policy.model.parameters(), lr=0.1)
    gradients(session, setup, optimizer, 0)
    optimizer.step()
    optimizer.zero_grad()
    before_theta = policy.model.theta.detach().clone()
    before_state = {k: v.clone() if torch.is_tensor(v) else v
                    for k, v in optimizer.state[policy.model.theta].items()}
    queries_before = setup.judge.queries
    gradients(session, setup, optimizer, 1)
    assert torch.equal(policy.model.theta.detach(), before_theta)
    for key, value in optimizer.state[policy.model.theta].items():
        assert torch.equal(torch.as_tensor(value), torch.as_tensor(before_state[key])), key
    assert policy.model.theta.grad is not None and bool(policy.model.theta.grad.abs().sum() > 0)
    assert setup.judge.queries > queries_before  # the half-step opponents were judged
