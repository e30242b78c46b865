"""The reinforcement-learning baselines in the online engine (``prefkit.engine.online.tokens``):
GAE through the engine on a hand-computed trajectory, the step's loss equal to the pure
``token`` losses over the whole step whatever the micro-batching, the critic trained and saved,
the adaptive KL controller, pairwise PPO's anchors, ``--resume`` mid-round with PPO epochs, and
bad input (a judge without a scalar reward, a model without hidden states, K < 2, ...)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from prefkit.config import ConfigError
from prefkit.data import PairRecord
from prefkit.engine import RunSession, TrainData, train
from prefkit.engine.methods import get_method
from prefkit.engine.online.methods import resolve_recipe
from prefkit.engine.online.step import OnlineShape
from prefkit.engine.online.tokens import response_positions
from prefkit.engine.online.train import build_online_run
from prefkit.errors import InputError
from prefkit.losses import LOSSES, StepSize, reduce_to_step
from prefkit.preference import ScoringPreferenceModel

from .online_toys import PROMPT, MatrixJudge, RewardJudge, one_token_policy, toy_config

UTILITY = np.array([2.0, 1.0, 0.0, -1.0])
BT = 1 / (1 + np.exp(-(UTILITY[:, None] - UTILITY[None, :])))
INIT = [0.3, -0.2, 0.1, 0.0]


def _setup(tmp_path, method, *overrides, judge=None, prompts=16, backbone=True, eos_logit=None, policy=None):
    policy = policy or one_token_policy(INIT, backbone=backbone, eos_logit=eos_logit)
    reference = one_token_policy(np.zeros(len(INIT)), eos_logit=eos_logit)
    cfg = toy_config(tmp_path, method, f"online.prompts_per_step={prompts}", *overrides)
    session = RunSession.start(cfg)
    setup = build_online_run(session, get_method(method), data=TrainData(prompts=[PROMPT] * prompts,
                                                                          pairs=[PairRecord(PROMPT, "a0", "a3")]),
                             policy=policy, reference=reference, judge=judge or RewardJudge(UTILITY, empty=-0.5))
    return session, setup


def _log_softmax(logits):
    z = np.asarray(logits, dtype=np.float64)
    return z - np.log(np.exp(z).sum())


# ------------------------------------------------------------------ GAE on a hand-computed trajectory

def test_ppo_advantages_through_the_engine_are_gae_on_the_kl_shaped_reward(tmp_path):
    """Each response is [a_i, eos] (log pi(eos | a_i) = 0 under both models). With a critic that
    says V = 0.5 everywhere, KL coefficient beta, gamma = 1 and lambda = 0.9, GAE gives by hand
    A_eos = R_i - 0.5 and A_a = -beta (log pi(a_i) - log pi_ref(a_i)) + lambda A_eos; returns = A + V."""
    beta, lam = 0.1, 0.9
    session, setup = _setup(tmp_path, "ppo", f"loss.beta={beta}",
                            f"loss.params={{lam: {lam}, whiten_advantages: false}}", "online.max_new_tokens=2")
    with torch.no_grad():
        setup.critic.head.linear.bias.fill_(0.5)
    setup.shape.micro_batches(0)
    rows = setup.shape.round_rows
    names = [setup.policy.tokenizer.decode(r[0][:1]) for r in rows.responses]
    own, ref = _log_softmax(INIT), _log_softmax(np.zeros(4))
    for i, name in enumerate(names):
        a = int(name[1])
        kl = own[a] - ref[a]
        a_eos = UTILITY[a] - 0.5
        a_action = -beta * kl + lam * a_eos
        np.testing.assert_allclose(rows.tokens["old_logps"][i], [own[a], 0.0], atol=1e-6)
        np.testing.assert_allclose(rows.tokens["ref_logps"][i], [ref[a], 0.0], atol=1e-6)
        np.testing.assert_allclose(rows.tokens["old_values"][i], [0.5, 0.5], atol=1e-6)
        np.testing.assert_allclose(rows.tokens["advantages"][i], [a_action, a_eos], atol=1e-6)
        np.testing.assert_allclose(rows.tokens["returns"][i], [a_action + 0.5, a_eos + 0.5], atol=1e-6)
    assert len(set(names)) > 1
    session.close()


def test_rloo_and_grpo_advantages_use_each_prompt_group(tmp_path):
    """Rows are prompt-major groups of K: RLOO's advantage is R_i minus the mean of the other
    K - 1 (KL-penalised) rewards; GRPO's is (R_i - mean)/(std + 1e-4) within the group."""
    for method in ("rloo", "grpo"):
        session, setup = _setup(tmp_path / method, method, "online.samples_per_prompt=4", "loss.beta=0.0",
                                prompts=6, backbone=False)
        setup.shape.micro_batches(0)
        rows = setup.shape.round_rows
        reward = np.array(rows.values["reward"]).reshape(6, 4)
        adv = np.array(rows.values["advantage"]).reshape(6, 4)
        if method == "rloo":
            expected = reward - (reward.sum(axis=1, keepdims=True) - reward) / 3
        else:
            std = reward.std(axis=1, ddof=1, keepdims=True)
            expected = np.where(std > 0, (reward - reward.mean(axis=1, keepdims=True)) / (std + 1e-4), 0.0)
        np.testing.assert_allclose(adv, expected, atol=1e-5)
        assert rows.group == [g for g in range(6) for _ in range(4)]
        session.close()


# ------------------------------------------------------------------ the step's loss is the pure loss

@pytest.mark.parametrize("loss", ["ppo", "grpo", "bnpo", "dapo", "dr_grpo", "rloo", "reinforce_pp"])
def test_the_driver_step_equals_the_registry_loss_over_the_whole_step(tmp_path, loss):
    """Two micro-batches of unequal token counts (responses of 1 or 2 tokens): the driver's
    gradient is that of ``reduce_to_step(spec.fn(...) [+ value_fn], mask, reduction, StepSize)``
    summed over the same micro-batches, called directly on the rows' tensors."""
    method = {"ppo": "ppo", "rloo": "rloo", "reinforce_pp": "reinforce_pp"}.get(loss, "grpo")
    overrides = ["train.grad_accum=2", "online.samples_per_prompt=3", "online.max_new_tokens=2"]
    if method == "grpo":
        overrides.append(f"loss.name={loss}")
    session, setup = _setup(tmp_path, method, *overrides, prompts=5, eos_logit=0.2, backbone=method == "ppo")
    module = setup.module
    params = list(module.parameters())
    micro = setup.shape.micro_batches(0)
    assert len(micro) == 2
    optimizer = torch.optim.SGD(params, lr=0.0)
    session.gradients(setup.shape, module, optimizer, 0)
    got = [p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p) for p in params]
    optimizer.zero_grad(set_to_none=True)

    rollout = setup.shape.ctx.rollout
    spec, token = rollout.loss.spec, rollout.loss
    rows = setup.shape.round_rows
    masks, pieces = [], []
    for m in micro:
        _, index = m.data
        batch = rollout.encode([rows.prompt_ids[i] for i in index], [rows.responses[i][0] for i in index])
        mask = response_positions(batch)
        if setup.critic is not None:
            logps, values = module(batch)
        else:
            from prefkit.policy import token_logps

            logps, values = token_logps(module, batch), None

        def placed(name, index=index, mask=mask, dtype=logps.dtype):
            flat = torch.tensor([x for i in index for x in rows.tokens[name][i]], dtype=dtype)
            return torch.zeros(mask.shape, dtype=dtype).masked_scatter(mask, flat)

        adv = (torch.tensor([rows.values["advantage"][i] for i in index], dtype=logps.dtype)
               if "advantage" in rows.values else placed("advantages"))
        per_seq = spec.fn(logps, placed("old_logps"), placed("ref_logps"), adv, mask, **token.fn, **token.engine)
        if spec.value_fn is not None:
            per_seq = per_seq + spec.value_fn(values, placed("old_values").float(), placed("returns").float(), mask,
                                              **token.value)
        masks.append(mask)
        pieces.append((per_seq, mask))
    assert len({int(m.sum()) for m in masks}) == 2 or loss != "bnpo"  # unequal micro-batches matter for bnpo
    step = StepSize.of(*masks)
    total = sum(reduce_to_step(per_seq, mask, spec.reduction, step) for per_seq, mask in pieces)
    total.backward()
    for a, p in zip(got, params):
        b = p.grad if p.grad is not None else torch.zeros_like(p)
        torch.testing.assert_close(a, b.to(a.dtype), rtol=1e-5, atol=1e-7)
    assert any(float(g.abs().sum()) > 0 for g in got)
    session.close()


# ------------------------------------------------------------------ critic, controller, anchors, presets

def test_ppo_trains_and_saves_its_critic_and_only_the_policy_as_policy(tmp_path):
    policy = one_token_policy(np.zeros(4), backbone=True)
    cfg = toy_config(tmp_path, "ppo", "train.steps=4", "train.lr=0.1", "online.prompts_per_step=16")
    result = train(cfg, data=TrainData(prompts=[PROMPT]), policy=policy, reference=one_token_policy(np.zeros(4)),
                   judge=RewardJudge(UTILITY), progress=False)
    run = tmp_path / "run"
    from safetensors.torch import load_file

    assert json.loads((run / "critic" / "value_model.json").read_text())["kind"] == "separate"
    head = load_file(run / "critic" / "value_head.safetensors")
    assert float(head["linear.weight"].abs().sum()) > 0  # the driver optimised the head (it starts at 0)
    assert (run / "critic" / "model.safetensors").is_file()  # the critic's own backbone

    saved = load_file(run / "policy" / "model.safetensors")
    assert set(saved) == set(policy.model.state_dict())  # the policy alone
    latest = (run / "checkpoints" / "latest").read_text().strip()
    keys = set(load_file(run / "checkpoints" / latest / "model.safetensors"))
    assert any(k.startswith("critic.head.") for k in keys) and any(k.startswith("policy.") for k in keys)
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert all("value_loss" in r and math.isfinite(r["value_loss"]) for r in rows)
    assert result.metrics["samples"] == 4 * 16


def test_a_shared_critic_adds_only_a_head(tmp_path):
    session, setup = _setup(tmp_path, "ppo", "online.critic=shared")
    names = {n for n, _ in setup.module.named_parameters()}
    assert {n for n in names if n.startswith("critic.")} == {"critic.head.linear.weight", "critic.head.linear.bias"}
    session.close()


def test_the_adaptive_kl_controller_moves_with_the_kl_and_is_checkpointed(tmp_path):
    """A tiny target: the measured KL overshoots it, so the coefficient grows round by round;
    its state is in the shape's checkpointed state."""
    session, setup = _setup(tmp_path, "ppo", "loss.beta=0.1", "online.kl_target=1e-4", "online.kl_horizon=10",
                            policy=one_token_policy([2.0, 0.0, 0.0, 0.0], backbone=True))
    shape = setup.shape
    shape.micro_batches(0)
    first = shape.ctx.rollout.controller.value
    assert first == pytest.approx(0.1 * (1 + 0.2 * 16 / 10))  # clipped error 0.2, n = 16 sequences
    state = shape.state_dict()["rollout"]["kl_controller"]
    assert state["kind"] == "adaptive" and state["value"] == first
    assert shape.round_rows.values["kl_coef"][0] == 0.1  # the coefficient this round's advantages used
    session.close()


@pytest.mark.parametrize("anchor", ["reference", "answer"])
def test_pairwise_ppo_rewards_are_the_preference_against_the_anchor(tmp_path, anchor):
    """Reward = P(y beats anchor) from a pairwise judge: the anchor is a sample of the reference
    (a different one per prompt) or the prompt's given answer (a0, the pair's chosen)."""
    overrides = [f"online.anchor={anchor}"] if anchor == "answer" else []
    session, setup = _setup(tmp_path, "pairwise_ppo", *overrides, judge=MatrixJudge(BT))
    setup.shape.micro_batches(0)
    rows = setup.shape.round_rows
    names = [int(setup.policy.tokenizer.decode(r[0][:1])[1]) for r in rows.responses]
    rewards = np.array(rows.values["reward"])
    if anchor == "answer":
        np.testing.assert_allclose(rewards, [BT[a, 0] if a != 0 else 0.5 for a in names], atol=1e-6)
    else:
        assert set(np.round(rewards, 5)) <= set(np.round(BT.ravel(), 5)) | {0.5}
    if anchor == "answer":  # a sample identical to its anchor costs no query
        assert setup.judge.queries == sum(a != 0 for a in names)
    else:
        assert 0 < setup.judge.queries <= 16
    session.close()


def test_the_alpacafarm_preset_sets_the_ppo_settings_and_explicit_params_win(tmp_path):
    session, setup = _setup(tmp_path, "ppo", "online.preset=alpacafarm_sim", "loss.params={lam: 0.5}")
    token = setup.shape.ctx.rollout.loss
    assert token.advantage["kl_estimator"] == "k1_clamped" and token.advantage["whiten_rewards"] is True
    assert token.advantage["lam"] == 0.5 and setup.shape.ctx.rollout.controller.value == 0.0067
    assert token.value == {"cliprange_value": 0.2, "vf_coef": 0.1}
    session.close()


# ------------------------------------------------------------------ --resume mid-round with PPO epochs

def test_ppo_resume_mid_round_equals_an_uninterrupted_run(tmp_path, monkeypatch):
    """Eight steps in two rollout batches (rounds) of two minibatches x two PPO epochs, an
    adaptive KL controller: a crash after step 5 (mid-round) and ``--resume`` give the same
    policy, critic and metrics as an uninterrupted run; round 2 comes back from the checkpoint."""
    common = ["train.steps=8", "train.save_every=1", "train.lr=0.05", "online.iterations=2", "online.epochs=2",
              "online.prompts_per_step=8", "online.kl_target=0.01", "loss.beta=0.05"]

    def run(where, resume=False):
        cfg = toy_config(where, "ppo", *common)
        policy = one_token_policy(np.zeros(4), backbone=True)
        return train(cfg, data=TrainData(prompts=[PROMPT]), policy=policy, reference=one_token_policy(np.zeros(4)),
                     judge=RewardJudge(UTILITY), progress=False, resume=resume)

    straight = run(tmp_path / "a")
    original = OnlineShape.micro_batches

    def crash_at_step_5(self, step):
        if step == 5:
            raise RuntimeError("simulated crash")
        return original(self, step)

    monkeypatch.setattr(OnlineShape, "micro_batches", crash_at_step_5)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run(tmp_path / "b")
    monkeypatch.setattr(OnlineShape, "micro_batches", original)
    built = []
    start_round = OnlineShape.start_round
    monkeypatch.setattr(OnlineShape, "start_round", lambda self, r: built.append(r) or start_round(self, r))
    resumed = run(tmp_path / "b", resume=True)
    assert built == []
    for (name, a), (_, b) in zip(straight.policy.model.state_dict().items(), resumed.policy.model.state_dict().items()):
        assert torch.equal(a, b), name
    from safetensors.torch import load_file

    for part in ("value_head.safetensors", "model.safetensors"):
        a, b = load_file(tmp_path / "a/run/critic" / part), load_file(tmp_path / "b/run/critic" / part)
        assert all(torch.equal(a[k], b[k]) for k in a), part
    read = lambda d: [json.loads(x) for x in (d / "run" / "metrics.jsonl").read_text().splitlines()]  # noqa: E731
    assert [(r["loss"], r["kl_coef"]) for r in read(tmp_path / "a")] == [(r["loss"], r["kl_coef"])
                                                                         for r in read(tmp_path / "b")]
    assert straight.metrics["reward_evals"] == resumed.metrics["reward_evals"] == 2 * 2 * 8


# ------------------------------------------------------------------ bad input

class GPMLike(ScoringPreferenceModel):
    """A general preference model: 2-dimensional embeddings, no scalar reward."""

    kind = "gpm"

    def embed(self, prompts, responses):
        return torch.zeros(len(responses), 2)

    def prob_from_embeddings(self, e_a, e_b):
        return torch.full((e_a.shape[0],), 0.5)

    def prob(self, prompts, a, b):
        return torch.full((len(a),), 0.5)


def test_ppo_without_a_scalar_reward_says_what_to_do(tmp_path):
    with pytest.raises(ConfigError, match=r"online\.reward=win_rate.*pairwise_ppo"):
        _setup(tmp_path, "ppo", judge=GPMLike())


def test_a_value_head_on_a_model_without_hidden_states_names_the_key(tmp_path):
    for critic in ("separate", "shared"):
        with pytest.raises(InputError, match=rf"online\.critic.*online\.critic={critic}.*hidden state"):
            _setup(tmp_path / critic, "ppo", f"online.critic={critic}", backbone=False)


@pytest.mark.parametrize("method", ["rloo", "grpo", "dr_grpo"])
def test_group_methods_refuse_one_sample_per_prompt(tmp_path, method):
    with pytest.raises(ValueError, match=r"online\.samples_per_prompt must be >= 2, got 1"):
        _setup(tmp_path, method, "online.samples_per_prompt=1", backbone=False)


@pytest.mark.parametrize("overrides, message", [
    (["loss.params={entropy_coef: 0.01}"], r"entropy_coef"),
    (["loss.name=dpo"], r"loss\.name=dpo is a pairwise loss"),
    (["loss.name=grpo"], r"trains a critic and loss grpo has no value loss"),
    (["online.anchor=answer"], r"online\.anchor"),
    (["online.reward=win_rate"], r"online\.reward=win_rate.*>= 2, got 1"),
    (["loss.params={baseline: group_mean}"], r"not a setting"),
])
def test_bad_ppo_settings_are_refused(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        _setup(tmp_path, "ppo", *overrides)


@pytest.mark.parametrize("method, overrides, message", [
    ("grpo", ["online.kl_target=1.0"], r"online\.kl_target.*in the\s+loss"),
    ("grpo", ["online.critic=shared"], r"online\.critic.*grpo has no critic"),
    ("grpo", ["online.preset=alpacafarm_sim"], r"online\.preset.*grpo is not PPO"),
    ("online_dpo", ["online.kl_target=1.0"], r"online\.kl_target.*online_dpo has none"),
    ("online_dpo", ["loss.name=grpo"], r"token-level"),
    ("reinforce_pp", ["loss.params={baseline: group_mean}"], r"baseline=group_mean.*>= 2"),
])
def test_keys_of_other_methods_are_refused(tmp_path, method, overrides, message):
    with pytest.raises(ValueError, match=message):
        _setup(tmp_path, method, *overrides, judge=MatrixJudge(BT) if method == "online_dpo" else None,
               backbone=False)


def test_grpo_loss_types_resolve_through_the_method(tmp_path):
    for loss in ("bnpo", "dapo", "dr_grpo"):
        session, setup = _setup(tmp_path / loss, "grpo", f"loss.name={loss}", "online.samples_per_prompt=2",
                                backbone=False)
        assert setup.shape.ctx.rollout.loss.spec is LOSSES[loss]
        session.close()
    recipe = resolve_recipe(get_method("dr_grpo"), toy_config(tmp_path, "dr_grpo").online)
    assert recipe.samples_per_prompt == 4 and recipe.on_policy


def test_a_separate_critic_starts_from_a_checkpoint_with_the_policys_tokenizer(tmp_path):
    from prefkit.config import TinyConfig
    from prefkit.policy import Policy

    tiny = TinyConfig(hidden_size=16, layers=1, heads=2)
    policy = Policy.tiny(["a0 a1 a2 a3 x"], tiny, seed=0)
    policy.save(tmp_path / "same")
    Policy.tiny(["other words entirely"], tiny, seed=1).save(tmp_path / "other")
    cfg = ["online.reward=win_rate", "online.samples_per_prompt=2", "tiny.hidden_size=16", "tiny.layers=1",
           "tiny.heads=2"]
    session, setup = _setup(tmp_path / "a", "ppo", *cfg, f"online.critic_model={tmp_path / 'same'}",
                            judge=MatrixJudge(BT), policy=policy)
    saved = policy.model.model.state_dict()
    for name, value in setup.critic.backbone.state_dict().items():
        assert torch.equal(value, saved[name]), name
    session.close()
    for bad, message in (("other", "another"), ("missing", "not a Hugging Face model directory")):
        with pytest.raises(InputError, match=rf"online\.critic_model.*{message}"):
            _setup(tmp_path / bad, "ppo", *cfg, f"online.critic_model={tmp_path / bad}", judge=MatrixJudge(BT),
                   policy=Policy.tiny(["a0 a1 a2 a3 x"], tiny, seed=0))


def test_pairwise_ppo_refuses_a_reward_setting(tmp_path):
    with pytest.raises(ValueError, match=r"online\.reward=win_rate.*does not apply"):
        _setup(tmp_path, "pairwise_ppo", "online.reward=win_rate", judge=MatrixJudge(BT))
