"""From a rollout to advantages, per method: hand-computed pipelines, invariances, bad input."""

from __future__ import annotations

import math

import pytest
import torch

from prefkit import losses as L

D = torch.float64
F, T_ = False, True


def t(*rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=D)


def rollout(k: int = 2, **overrides) -> L.Rollout:
    """4 rows (2 prompts x 2 samples), responses of 2, 3, 1, 2 tokens after a 1-token prompt."""
    mask = torch.tensor([[F, T_, T_, F], [F, T_, T_, T_], [F, T_, F, F], [F, T_, T_, F]])
    g = torch.Generator().manual_seed(0)
    old = -torch.rand(4, 4, generator=g, dtype=D) - 0.5
    fields = {
        "rewards": t(1.0, 0.0, 0.5, 2.0),
        "mask": mask,
        "old_logps": old,
        "ref_logps": old + 0.2,
        "values": 0.1 * torch.ones(4, 4, dtype=D),
        "group_size": k,
    }
    return L.Rollout(**{**fields, **overrides})


def test_ppo_advantages_hand_computed():
    # one row: response of 2 tokens, old - ref = 0.2 per token (k1), kl_coef 0.5 -> -0.1 each;
    # score 1 on the last token: r = (-0.1, 0.9); V = (0.3, 0.5); gamma = lam = 1:
    #   t1: A = 0.9 - 0.5 = 0.4;  t0: delta = -0.1 + 0.5 - 0.3 = 0.1, A = 0.1 + 0.4 = 0.5
    #   returns = A + V = (0.8, 0.9)
    mask = torch.tensor([[F, T_, T_]])
    old = t([0.0, -1.0, -2.0])
    r = L.Rollout(t(1.0), mask, old, old - 0.2, t([9.0, 0.3, 0.5]))
    out = L.ppo_advantages(r, kl_coef=0.5, gamma=1.0, lam=1.0, whiten_advantages=False)
    torch.testing.assert_close(out.rewards, t([0.0, -0.1, 0.9]))
    torch.testing.assert_close(out.advantages, t([0.0, 0.5, 0.4]))
    torch.testing.assert_close(out.returns, t([0.0, 0.8, 0.9]))


def test_ppo_advantages_whitened_over_the_batch():
    out = L.ppo_advantages(rollout())
    adv, mask = out.advantages, rollout().mask
    assert abs(float(adv[mask].mean())) < 1e-12
    assert math.isclose(float(adv[mask].std()), 1.0, rel_tol=1e-6)
    assert bool((adv[~mask] == 0).all()) and out.returns.shape == (4, 4)


def test_pairwise_ppo_is_ppo_on_the_transformed_reward():
    p = t(0.5, 0.9, 0.2, 0.7)
    base = rollout(rewards=p)
    for transform in ("prob", "centered", "logit"):
        got = L.pairwise_ppo_advantages(base, reward_transform=transform)
        reward = L.pairwise_reward(p, transform=transform)
        want = L.ppo_advantages(rollout(rewards=reward))
        torch.testing.assert_close(got.advantages, want.advantages)
        torch.testing.assert_close(got.returns, want.returns)


def test_rloo_advantages_hand_computed_with_the_kl_in_the_reward():
    r = rollout()
    kl = ((r.old_logps - r.ref_logps) * r.mask).sum(-1)  # -0.2 per token: -0.4, -0.6, -0.2, -0.4
    torch.testing.assert_close(kl, t(-0.4, -0.6, -0.2, -0.4))
    # R = reward - 0.05 kl = 1.02, 0.03, 0.51, 2.02; K = 2: A_i = R_i - R_j
    out = L.rloo_advantages(r, kl_coef=0.05)
    torch.testing.assert_close(out.rewards, t(1.02, 0.03, 0.51, 2.02))
    torch.testing.assert_close(out.advantages, t(0.99, -0.99, -1.51, 1.51))


def test_grpo_and_dr_grpo_advantages_per_group():
    r = rollout(rewards=t(1.0, 0.0, 0.5, 2.0))
    # groups (1, 0) and (0.5, 2): centred +-0.5 and -+0.75; Bessel std sqrt(0.5), sqrt(1.125)
    torch.testing.assert_close(L.dr_grpo_advantages(r).advantages, t(0.5, -0.5, -0.75, 0.75))
    expected = t(0.5 / (math.sqrt(0.5) + 1e-4), -0.5 / (math.sqrt(0.5) + 1e-4),
                 -0.75 / (math.sqrt(1.125) + 1e-4), 0.75 / (math.sqrt(1.125) + 1e-4))  # fmt: skip
    torch.testing.assert_close(L.grpo_advantages(r).advantages, expected)


def test_rollout_advantages_ignore_a_per_prompt_reward_shift():
    shifted = rollout(rewards=t(1.0, 0.0, 0.5, 2.0) + t(10.0, 10.0, -3.0, -3.0))
    base = rollout(rewards=t(1.0, 0.0, 0.5, 2.0))
    for fn in (L.grpo_advantages, L.dr_grpo_advantages, L.rloo_advantages):
        torch.testing.assert_close(fn(shifted).advantages, fn(base).advantages)
    # PPO's advantages are not shift-invariant (the critic sees absolute rewards).
    assert not torch.allclose(L.ppo_advantages(shifted).advantages,
                              L.ppo_advantages(base).advantages)  # fmt: skip


def test_reinforce_pp_advantages_are_returns_to_go_normalised_globally():
    r = rollout()
    out = L.reinforce_pp_advantages(r, kl_coef=0.1)
    mask = r.mask
    # raw advantage with gamma 1: score - beta * sum_{s >= t} KL_s, KL = old - ref = -0.2
    raw = L.discounted_returns(out.rewards, mask)
    torch.testing.assert_close(raw[0, 1:3], t(1.0 + 0.04, 1.0 + 0.02))
    x = raw[mask]
    torch.testing.assert_close(
        out.advantages[mask], (x - x.mean()) / torch.sqrt(x.var(unbiased=False) + 1e-8)
    )
    base = L.reinforce_pp_advantages(r, kl_coef=0.0, baseline="group_mean")
    centred = t(0.5, -0.5, -0.75, 0.75)  # group means removed before the returns
    raw = L.discounted_returns(L.shaped_rewards(centred, mask), mask)[mask]
    torch.testing.assert_close(
        base.advantages[mask], (raw - raw.mean()) / torch.sqrt(raw.var(unbiased=False) + 1e-8)
    )


def test_presets_are_valid_ppo_params():
    spec = L.LOSSES["ppo"]
    for name, params in L.PPO_PRESETS.items():
        parts = spec.split_params(params)
        assert parts["advantage_fn"]["kl_coef"] in (0.0067, 0.02), name
        L.ppo_advantages(rollout(), **parts["advantage_fn"])
    assert L.PPO_PRESETS["alpacafarm_sim"]["kl_coef"] == 0.0067


# ------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("fn", [L.rloo_advantages, L.grpo_advantages, L.dr_grpo_advantages])
def test_group_methods_need_two_samples_per_prompt(fn):
    with pytest.raises(ValueError, match=r"online\.samples_per_prompt >= 2\), got K=1"):
        fn(rollout(k=1))


def test_rollout_refuses_bad_layouts():
    with pytest.raises(
        ValueError, match=r"4 rows are not a whole number of groups of online\.samples_per_prompt=3"
    ):
        rollout(k=3)
    with pytest.raises(ValueError, match="rewards has 3 rows but the per-token tensors 4"):
        rollout(rewards=t(1.0, 2.0, 3.0))
    with pytest.raises(ValueError, match=r"ref_logps must have the shape of old_logps \(4, 4\)"):
        rollout(ref_logps=torch.zeros(4, 5, dtype=D))
    with pytest.raises(ValueError, match="group_size must be a positive integer"):
        rollout(k=0)


def test_advantages_refuse_missing_inputs_and_non_finite_rewards():
    with pytest.raises(ValueError, match=r"rollout\.values is required for PPO"):
        L.ppo_advantages(rollout(values=None))
    with pytest.raises(ValueError, match=r"rollout\.ref_logps is required when kl_coef > 0"):
        L.ppo_advantages(rollout(ref_logps=None))
    L.ppo_advantages(rollout(ref_logps=None), kl_coef=0.0)  # no KL, no reference needed
    bad = rollout(rewards=t(1.0, float("nan"), 0.5, 2.0))
    for fn in (L.ppo_advantages, L.rloo_advantages, L.grpo_advantages, L.reinforce_pp_advantages):
        with pytest.raises(ValueError, match="must be finite"):
            fn(bad)
    with pytest.raises(ValueError, match="baseline"):
        L.reinforce_pp_advantages(rollout(), baseline="mean")
