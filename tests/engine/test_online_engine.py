"""The online engine: every method learns on a toy, P3O's shift invariance, the budget counts,
bad input (judges, prompts, generations without signal) and ``--resume`` mid-iteration."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from prefkit.config import RunConfig, load
from prefkit.data import PairRecord
from prefkit.engine import RunSession, TrainData, train
from prefkit.engine.methods import METHODS, get_method
from prefkit.engine.online.judge import OnlineJudge
from prefkit.engine.online.methods import ONLINE_METHODS, feedback_per_step, resolve_recipe
from prefkit.engine.online.step import NoPreferenceSignalError, OnlineShape
from prefkit.engine.online.train import best_of_n_texts, build_online_run
from prefkit.errors import InputError
from prefkit.preference import JudgeError
from prefkit.sim import make_world

from .online_toys import PROMPT, MatrixJudge, RewardJudge, one_token_policy, toy_config

UTILITY = np.array([2.0, 1.0, 0.0, -1.0])
"""A transitive (Bradley-Terry) toy: action a0 is the best, a3 the worst."""
BT = 1 / (1 + np.exp(-(UTILITY[:, None] - UTILITY[None, :])))


# ------------------------------------------------------------------ every method learns on a toy

TOY_SETTINGS = {
    "online_dpo": ["loss.beta=0.5"],
    "online_dpo_ipo": ["loss.beta=0.5"],
    "iterative_dpo": ["loss.beta=0.5", "online.iterations=2", "online.epochs=2"],
    "nash_md": ["loss.beta=0.1"],
    "egpo": ["loss.beta=0.5"],
    "online_ipo": ["loss.beta=0.5"],
    "dno": ["loss.beta=0.5", "online.iterations=2", "online.teacher=true"],
    "sppo": ["loss.beta=0.5", "online.iterations=2"],
    "gpo": ["loss.beta=2.0", "online.iterations=2"],
    "p3o": ["loss.beta=0.1"],
    "superhf": ["loss.beta=0.1"],
    "grao": [],
    "expert_iteration": [],
    "ppo": [],
    "pairwise_ppo": [],
    "rloo": [],
    "grpo": [],
    "dr_grpo": [],
    "reinforce_pp": [],
}
REWARD_METHODS = {"p3o", "superhf", "grao", "expert_iteration", "ppo", "rloo", "grpo", "dr_grpo", "reinforce_pp"}
CRITIC_METHODS = {"ppo", "pairwise_ppo"}


def gradients(session, setup, optimizer, step):
    """The driver's gradient of one step on the unwrapped model: ``(metrics, tokens)``."""
    _, metrics, tokens, _ = session.gradients(setup.shape, setup.policy.model, optimizer, step)
    return metrics, tokens


def test_every_online_method_is_covered_by_the_toy():
    assert set(TOY_SETTINGS) | {"best_of_n"} == {m.name for m in ONLINE_METHODS}
    for method in ONLINE_METHODS:
        assert METHODS[method.name].step == "online"


@pytest.mark.parametrize("method", sorted(TOY_SETTINGS))
def test_each_method_moves_toward_the_preferred_action(tmp_path, method):
    """From the uniform policy, 8 AdamW steps raise the probability of the best action a0 and
    lower that of the worst a3 (judge: the exact BT preference, or its reward)."""
    backbone = method in CRITIC_METHODS  # a value head reads hidden states
    policy, reference = one_token_policy(np.zeros(4), backbone=backbone), one_token_policy(np.zeros(4))
    judge = RewardJudge(UTILITY) if method in REWARD_METHODS else MatrixJudge(BT)
    cfg = toy_config(tmp_path, method, "train.steps=8", "train.lr=0.1", "online.prompts_per_step=16",
                     *TOY_SETTINGS[method])
    answers = [PairRecord(PROMPT, "a0", "a3")]
    result = train(cfg, data=TrainData(prompts=[PROMPT], pairs=answers),
                          policy=policy, reference=reference, judge=judge, progress=False)
    probs = policy.model.probs()
    assert probs[0] > 0.32, probs
    assert probs[3] < 0.2, probs
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, 9))
    assert all(np.isfinite(r["loss"]) for r in rows)
    assert result.metrics["queries"] + result.metrics["reward_evals"] > 0


def test_best_of_n_picks_the_best_of_its_samples():
    policy = one_token_policy(np.zeros(4))
    sampler = build_sampler(policy)
    judge = OnlineJudge(RewardJudge(UTILITY))
    picks = best_of_n_texts(sampler, judge, [PROMPT] * 200, keep=1, n=4, seed=0)
    share = np.mean([p[0] == "a0" for p in picks])
    assert share == pytest.approx(1 - 0.75**4, abs=0.06)  # P(a0 among 4 uniform draws) = 0.68
    assert judge.reward_evals == 800 and judge.queries == 0


def build_sampler(policy):
    from prefkit.engine.online.rollout import Sampler

    return Sampler(policy, max_new_tokens=1)


# ------------------------------------------------------------------ P3O: per-prompt reward shift

def _p3o_gradient(tmp_path, judge, variant):
    prompts = ["x", "y"]
    policy = one_token_policy([0.3, -0.2, 0.1, 0.0], prompts=prompts)
    reference = one_token_policy([0.0, 0.0, 0.0, 0.0], prompts=prompts)
    cfg = toy_config(tmp_path, "p3o", "online.prompts_per_step=8", "online.samples_per_prompt=4",
                     "loss.beta=0.1", f"loss.params={{variant: {variant}}}", "train.steps=1")
    setup = build_online_run(session := RunSession.start(cfg), get_method("p3o"), data=TrainData(prompts=prompts), policy=policy,
                             reference=reference, judge=judge)
    optimizer = torch.optim.SGD(policy.model.parameters(), lr=1.0)
    gradients(session, setup, optimizer, 0)
    return policy.model.theta.grad.detach().clone()


@pytest.mark.parametrize("variant", ["joint", "separate"])
def test_p3o_update_is_unchanged_by_a_per_prompt_reward_shift(tmp_path, variant):
    rewards = [0.25, 1.5, -0.75, 2.0]  # exact in float32, as are the shifted sums below
    plain = _p3o_gradient(tmp_path / "a", RewardJudge(rewards), variant)
    shifted = _p3o_gradient(tmp_path / "b", RewardJudge(rewards, delta={"x": 3.0, "y": -8.0}), variant)
    assert plain.abs().sum() > 0.1
    torch.testing.assert_close(plain, shifted, rtol=1e-6, atol=1e-8)  # float32 rounding of R - beta KL
    # a shift that depends on the response (not only on the prompt) does change the update
    other = _p3o_gradient(tmp_path / "c", RewardJudge([0.25, 1.5, -0.75, 4.0]), variant)
    assert (plain - other).abs().max() > 0.01


# ------------------------------------------------------------------ budget accounting on a world

@pytest.fixture(scope="module")
def world():
    return make_world("transitive", seed=0)


def world_config(tmp_path, method, *overrides) -> RunConfig:
    return load(RunConfig, None, [
        f"method={method}", f"out={tmp_path / 'run'}", "eval.world=transitive", "tiny.hidden_size=16",
        "tiny.layers=1", "tiny.heads=2", "train.steps=3", "train.max_length=48", "train.lr=1e-3",
        "train.log_every=1", "online.prompts_per_step=3", "online.max_new_tokens=8", *overrides,
    ])


@pytest.mark.parametrize("method, overrides, queries_per_prompt", [
    ("online_dpo", [], 1),
    ("iterative_dpo", [], 6),
    ("nash_md", [], 2),
    ("egpo", [], 4),
    ("online_ipo", ["online.opponents=2"], 4),
    ("sppo", [], 6),
    ("dno", [], 6),
    ("p3o", ["online.reward=win_rate"], 1),
    ("superhf", ["online.reward=win_rate"], 6),
    ("expert_iteration", ["online.reward=win_rate"], 6),
    ("grpo", ["online.reward=win_rate"], 6),
    ("ppo", ["online.reward=win_rate", "online.samples_per_prompt=2", "online.critic=shared"], 1),
    ("pairwise_ppo", [], 1),
])
def test_queries_are_counted_as_judged_pairs(tmp_path, world, method, overrides, queries_per_prompt):
    cfg = world_config(tmp_path, method, *overrides)
    prompts = world.prompts("train", 12)
    result = train(cfg, data=TrainData(prompts=prompts), progress=False)
    recipe = resolve_recipe(get_method(method), cfg.online)
    per_step, evals = feedback_per_step(recipe, cfg.online)
    assert per_step == queries_per_prompt * cfg.online.prompts_per_step and evals == 0
    assert result.metrics["queries"] == per_step * cfg.train.steps  # no two samples were identical
    assert result.metrics["reward_evals"] == 0
    assert 0 < result.metrics["gen_share"] < 1 and result.metrics["gen_tokens"] > 0
    logged = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["queries"] for r in logged if "queries" in r][-1] == result.metrics["queries"]


class LengthReward:
    """A scalar reward model on text (longer is better): ``embed`` is ``[N, 1]``."""

    def embed(self, prompts, responses):
        return torch.tensor([float(len(r.split())) for r in responses])[:, None]

    def prob_from_embeddings(self, e_a, e_b):
        return torch.sigmoid(e_a[:, 0] - e_b[:, 0])

    def prob(self, prompts, a, b):
        return self.prob_from_embeddings(self.embed(prompts, a), self.embed(prompts, b))


def test_a_reward_model_costs_reward_evaluations_not_queries(tmp_path, world):
    cfg = world_config(tmp_path, "p3o", "online.samples_per_prompt=4")
    result = train(cfg, data=TrainData(prompts=world.prompts("train", 12)),
                          judge=LengthReward(), progress=False)
    assert result.metrics["queries"] == 0
    assert result.metrics["reward_evals"] == 3 * 3 * 4  # steps x prompts x samples


def test_scalar_reward_methods_refuse_a_judge_without_a_reward(tmp_path, world):
    cfg = world_config(tmp_path, "p3o")
    with pytest.raises(ValueError, match=r"online\.reward=win_rate"):
        train(cfg, data=TrainData(prompts=world.prompts("train", 4)), progress=False)


def test_gpo_refuses_a_judge_with_hard_labels(tmp_path, world):
    cfg = world_config(tmp_path, "gpo")
    with pytest.raises(ValueError, match="0/1 labels"):
        train(cfg, data=TrainData(prompts=world.prompts("train", 4)), progress=False)


# ------------------------------------------------------------------ bad judges, prompts, generations

class BadJudge:
    def __init__(self, value):
        self.value = value

    def prob(self, prompts, a, b):
        if self.value == "shape":
            return torch.full((len(a) + 1,), 0.5)
        return torch.full((len(a),), self.value)


@pytest.mark.parametrize("value, message", [
    (float("nan"), "non-finite"), (1.5, "not a probability"), (-0.1, "not a probability"), ("shape", "shape"),
])
def test_a_judge_that_returns_non_probabilities_stops_the_run(tmp_path, value, message):
    cfg = toy_config(tmp_path, "online_dpo", "online.prompts_per_step=8")
    with pytest.raises(JudgeError, match=message):
        train(cfg, data=TrainData(prompts=[PROMPT]),
                     policy=one_token_policy(np.zeros(4)), judge=BadJudge(value), progress=False)


def test_an_empty_prompt_set_is_an_error(tmp_path):
    cfg = toy_config(tmp_path, "online_dpo")
    with pytest.raises(InputError, match="prompt set is empty"):
        train(cfg, data=TrainData(prompts=[]),
                     policy=one_token_policy(np.zeros(4)), judge=MatrixJudge(BT), progress=False)


def test_online_training_without_prompts_names_the_missing_input(tmp_path):
    cfg = toy_config(tmp_path, "online_dpo")
    with pytest.raises(InputError, match="--data FILE"):
        train(cfg, policy=one_token_policy(np.zeros(4)), judge=MatrixJudge(BT),
                     progress=False)


@pytest.mark.parametrize("method", ["online_dpo", "sppo", "iterative_dpo", "p3o"])
def test_identical_generations_give_a_clear_error(tmp_path, method):
    policy = one_token_policy([40.0, 0.0, 0.0, 0.0])  # always a0
    judge = RewardJudge(UTILITY) if method == "p3o" else MatrixJudge(BT)
    cfg = toy_config(tmp_path, method, "online.prompts_per_step=4", "online.iterations=1"
                     if method in ("sppo", "iterative_dpo") else "online.epochs=1")
    with pytest.raises(NoPreferenceSignalError, match="identical"):
        train(cfg, data=TrainData(prompts=[PROMPT]), policy=policy, judge=judge,
                     progress=False)


def test_all_empty_generations_give_a_clear_error(tmp_path):
    policy = one_token_policy([0.0, 0.0], eos_logit=40.0)  # the end-of-sequence token at once
    cfg = toy_config(tmp_path, "online_dpo", "online.prompts_per_step=4")
    with pytest.raises(NoPreferenceSignalError, match="step 1"):
        train(cfg, data=TrainData(prompts=[PROMPT]), policy=policy,
                     judge=MatrixJudge(BT[:2, :2]), progress=False)


def test_a_policy_that_collapses_mid_run_skips_rounds_and_counts_them(tmp_path):
    """Signal at step 1, then the policy puts all its mass on a0: later rounds have no signal;
    they are skipped (no update, ``empty_steps``) with one warning instead of stopping the run."""
    policy = one_token_policy(np.zeros(4))
    cfg = toy_config(tmp_path, "online_dpo", "online.prompts_per_step=8", "train.steps=3")
    setup = build_online_run(session := RunSession.start(cfg), get_method("online_dpo"), data=TrainData(prompts=[PROMPT]), policy=policy,
                             reference=one_token_policy(np.zeros(4)), judge=MatrixJudge(BT))
    optimizer = torch.optim.SGD(policy.model.parameters(), lr=0.1)
    metrics, _ = gradients(session, setup, optimizer, 0)
    assert metrics["rows"] > 0 and metrics["empty_steps"] == 0
    with torch.no_grad():
        policy.model.theta[policy.model.action_ids] = torch.tensor([40.0, 0.0, 0.0, 0.0], dtype=torch.float64)
    optimizer.zero_grad(set_to_none=True)
    with pytest.warns(UserWarning, match="skipped and counted"):
        metrics, tokens = gradients(session, setup, optimizer, 1)
    assert metrics["rows"] == 0 and metrics["loss"] == 0.0 and tokens == 0
    assert policy.model.theta.grad is None
    metrics, _ = gradients(session, setup, optimizer, 2)
    assert metrics["empty_steps"] == 2 and metrics["skipped/identical"] >= 16


def test_prompts_without_signal_are_skipped_and_counted(tmp_path):
    """Two equally likely actions, two samples: about half the prompts draw the same action twice;
    they are skipped, counted in ``skipped/identical`` and cost no query."""
    policy = one_token_policy([0.0, 0.0])
    cfg = toy_config(tmp_path, "online_dpo", "online.prompts_per_step=40", "train.steps=2")
    result = train(cfg, data=TrainData(prompts=[PROMPT]), policy=policy,
                          judge=MatrixJudge(BT[:2, :2]), progress=False)
    skipped = result.metrics["skipped"]["identical"]
    assert 20 < skipped < 60
    assert result.metrics["queries"] == 80 - skipped
    assert result.metrics["rows"] == 80 - skipped


# ------------------------------------------------------------------ --resume mid-iteration

@pytest.mark.parametrize("method, overrides", [
    ("iterative_dpo", ["online.iterations=2", "online.epochs=3", "online.samples_per_prompt=3"]),
    ("online_dpo", []),
])
def test_resume_mid_round_equals_an_uninterrupted_run(tmp_path, world, monkeypatch, method, overrides):
    """Six steps in two rounds of three: a crash after step 4 (mid-round) and ``--resume`` give the
    same weights, budget and metrics as an uninterrupted run (round rows, judge RNG restored)."""
    common = ["train.steps=6", "train.save_every=1", "train.lr=3e-3", *overrides]
    prompts = world.prompts("train", 10)
    straight = train(world_config(tmp_path / "a", method, *common), data=TrainData(prompts=prompts), progress=False)

    crashed = world_config(tmp_path / "b", method, *common)
    original = OnlineShape.micro_batches

    def crash_at_step_4(self, step):
        if step == 4:
            raise RuntimeError("simulated crash")
        return original(self, step)

    monkeypatch.setattr(OnlineShape, "micro_batches", crash_at_step_4)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(crashed, data=TrainData(prompts=prompts), progress=False)
    monkeypatch.setattr(OnlineShape, "micro_batches", original)
    built = []
    monkeypatch.setattr(OnlineShape, "start_round", _spy(OnlineShape.start_round, built))
    resumed = train(crashed, data=TrainData(prompts=prompts), resume=True,
                           progress=False)
    if method == "iterative_dpo":
        assert built == []  # round 2 (steps 4-6) came back from the checkpoint, not resampled
    for (name, a), (_, b) in zip(straight.policy.model.state_dict().items(), resumed.policy.model.state_dict().items()):
        assert torch.equal(a, b), name
    for key in ("queries", "gen_tokens", "rows", "final_loss"):
        assert straight.metrics[key] == resumed.metrics[key], key
    read = lambda d: [json.loads(x) for x in (d / "run" / "metrics.jsonl").read_text().splitlines()]  # noqa: E731
    assert [r["loss"] for r in read(tmp_path / "a")] == [r["loss"] for r in read(tmp_path / "b")]


def _spy(fn, calls):
    def wrapped(self, r):
        calls.append(r)
        return fn(self, r)
    return wrapped


def test_resume_refuses_a_changed_online_setting(tmp_path, world):
    cfg = world_config(tmp_path, "online_dpo", "train.steps=2")
    train(cfg, data=TrainData(prompts=world.prompts("train", 4)), progress=False)
    changed = world_config(tmp_path, "online_dpo", "train.steps=3", "online.prompts_per_step=4")
    with pytest.raises(InputError, match=r"online\.prompts_per_step"):
        train(changed, data=TrainData(prompts=world.prompts("train", 4)),
                     resume=True, progress=False)


def test_train_dispatches_online_methods(tmp_path, world):
    cfg = world_config(tmp_path, "nash_md", "train.steps=1")
    result = train(cfg, data=TrainData(prompts=world.prompts("train", 4)), progress=False)
    assert result.metrics["method"] == "nash_md" and result.metrics["queries"] == 6


def test_the_vllm_backend_without_vllm_is_a_clear_error(tmp_path):
    pytest.importorskip("torch")
    try:
        import vllm  # noqa: F401
    except ImportError:
        pass
    else:  # pragma: no cover - only on machines with vLLM
        pytest.skip("vLLM is installed here")
    cfg = toy_config(tmp_path, "online_dpo", "online.backend=vllm")
    with pytest.raises(InputError, match=r"\[online\.backend\].*prefkit\[vllm\]"):
        build_online_run(RunSession.start(cfg), get_method("online_dpo"), data=TrainData(prompts=[PROMPT]),
                         policy=one_token_policy(np.zeros(4)), judge=MatrixJudge(BT))
