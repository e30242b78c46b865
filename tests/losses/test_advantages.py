"""Advantage estimators: hand-computed GAE, KL estimators, whitening, group baselines, bad input."""

from __future__ import annotations

import math

import pytest
import torch

from prefkit import losses as L

D = torch.float64
F, T_ = False, True


def t(*rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=D)


# ------------------------------------------------------------------------------- GAE


def test_gae_on_a_hand_computed_trajectory():
    # Row 0: prompt at positions 0-1, response at 2-4, padding at 5; gamma 0.9, lambda 0.8.
    #   t=4 (last): delta = 1.0 + 0.9*0 - 0.8 = 0.2                  A4 = 0.2
    #   t=3: delta = -0.1 + 0.9*0.8 - 0.4 = 0.22;  A3 = 0.22 + 0.72*0.2   = 0.364
    #   t=2: delta = 0.0 + 0.9*0.4 - 0.5 = -0.14; A2 = -0.14 + 0.72*0.364 = 0.12208
    #   returns = A + V: 0.62208, 0.764, 1.0
    # Row 1: response at positions 1-2 (gamma 0.9 too):
    #   t=2: delta = -0.5 - 0.1 = -0.6                              A2 = -0.6
    #   t=1: delta = 0.5 + 0.9*0.1 - 0.2 = 0.39; A1 = 0.39 + 0.72*(-0.6) = -0.042
    # Entries outside the mask hold junk (99) that must not leak in.
    rewards = t([99, 99, 0.0, -0.1, 1.0, 99], [99, 0.5, -0.5, 99, 99, 99])
    values = t([99, 99, 0.5, 0.4, 0.8, 99], [99, 0.2, 0.1, 99, 99, 99])
    mask = torch.tensor([[F, F, T_, T_, T_, F], [F, T_, T_, F, F, F]])
    advantages, returns = L.gae(rewards, values, mask, gamma=0.9, lam=0.8)
    torch.testing.assert_close(
        advantages, t([0, 0, 0.12208, 0.364, 0.2, 0], [0, -0.042, -0.6, 0, 0, 0])
    )
    torch.testing.assert_close(
        returns, t([0, 0, 0.62208, 0.764, 1.0, 0], [0, 0.158, -0.5, 0, 0, 0])
    )


def test_gae_limits_lambda_zero_is_td_error_lambda_one_is_return_minus_value():
    g = torch.Generator().manual_seed(0)
    r, v = torch.randn(3, 5, generator=g, dtype=D), torch.randn(3, 5, generator=g, dtype=D)
    mask = torch.tensor([[T_] * 5, [F, T_, T_, T_, F], [F, F, F, T_, T_]])
    a0, _ = L.gae(r, v, mask, gamma=0.7, lam=0.0)
    next_v = torch.cat([v[:, 1:], torch.zeros(3, 1, dtype=D)], 1) * torch.cat(
        [mask[:, 1:], torch.zeros(3, 1, dtype=torch.bool)], 1
    )
    torch.testing.assert_close(a0, ((r + 0.7 * next_v - v) * mask))
    a1, returns = L.gae(r, v, mask, gamma=0.7, lam=1.0)
    torch.testing.assert_close(a1, L.discounted_returns(r, mask, gamma=0.7) - v * mask)
    torch.testing.assert_close(returns, L.discounted_returns(r, mask, gamma=0.7))


def test_discounted_returns_worked_numbers():
    # gamma = 0.5 on rewards (1, 2, 4): G2 = 4, G1 = 2 + 2 = 4, G0 = 1 + 2 = 3
    out = L.discounted_returns(t([1.0, 2.0, 4.0, 7.0]), torch.tensor([[T_, T_, T_, F]]), gamma=0.5)
    torch.testing.assert_close(out, t([3.0, 4.0, 4.0, 0.0]))


# ------------------------------------------------------------------------------- KL


def test_kl_estimators_worked_numbers():
    # d = ref - logp: row 0 d = -0.5, row 1 d = +1
    logps, ref = t([-1.0], [-2.0]), t([-1.5], [-1.0])
    mask = torch.ones(2, 1, dtype=torch.bool)
    expected = {
        "k1": t([0.5], [-1.0]),
        "k1_clamped": t([0.5], [0.0]),
        "k2": t([0.125], [0.5]),
        "k3": t([math.exp(-0.5) + 0.5 - 1], [math.e - 2]),
    }
    for name, value in expected.items():
        torch.testing.assert_close(L.kl_penalty(logps, ref, mask, estimator=name), value)


def test_k3_is_non_negative_and_zero_outside_the_mask_even_with_inf_padding():
    g = torch.Generator().manual_seed(1)
    logps = torch.randn(4, 6, generator=g, dtype=D) - 1
    ref = torch.randn(4, 6, generator=g, dtype=D) - 1
    mask = torch.tensor([[T_] * 6, [T_, T_, F, F, F, F], [F, T_, T_, T_, F, F], [F] * 5 + [T_]])
    logps = logps.masked_fill(~mask, float("-inf"))
    kl = L.kl_penalty(logps, ref, mask, estimator="k3")
    assert bool((kl >= 0).all()) and bool((kl[~mask] == 0).all())


def test_kl_gradcheck_k3():
    g = torch.Generator().manual_seed(2)
    logps = torch.randn(3, 4, generator=g, dtype=D, requires_grad=True)
    ref = torch.randn(3, 4, generator=g, dtype=D)
    mask = torch.tensor([[T_, T_, T_, F], [T_] * 4, [F, T_, F, F]])
    assert torch.autograd.gradcheck(lambda x: L.kl_penalty(x, ref, mask, estimator="k3"), (logps,))


# ------------------------------------------------------------------ shaped rewards, whiten


def test_shaped_rewards_put_the_score_on_the_last_token_and_subtract_the_kl():
    mask = torch.tensor([[F, T_, T_, F], [F, T_, F, F]])
    kl = torch.full((2, 4), 0.1, dtype=D)
    out = L.shaped_rewards(t(1.0, 2.0), mask, kl=kl, kl_coef=0.5)
    torch.testing.assert_close(out, t([0, -0.05, 0.95, 0], [0, 1.95, 0, 0]))
    torch.testing.assert_close(L.shaped_rewards(t(1.0, 2.0), mask), t([0, 0, 1, 0], [0, 2, 0, 0]))


def test_whiten_worked_numbers_and_mask():
    values = t([1.0, 2.0, 3.0, 4.0, 100.0])
    mask = torch.tensor([[T_, T_, T_, T_, F]])
    std = math.sqrt(5 / 3 + 1e-8)  # unbiased variance of 1..4 is 5/3
    torch.testing.assert_close(L.whiten(values, mask), t([-1.5, -0.5, 0.5, 1.5, 0.0]) / std)
    kept = L.whiten(values, mask, shift_mean=False)
    torch.testing.assert_close(kept[0, :4], t(-1.5, -0.5, 0.5, 1.5) / std + 2.5)
    population = L.whiten(values, mask, unbiased=False)
    torch.testing.assert_close(population[0, :4], t(-1.5, -0.5, 0.5, 1.5) / math.sqrt(1.25 + 1e-8))


# ------------------------------------------------------------------ group baselines


def test_leave_one_out_baseline_worked_numbers():
    # rewards 1, 2, 3, 6: sum 12, baseline (12 - r)/3 = 11/3, 10/3, 3, 2
    rewards = t([1.0, 2.0, 3.0, 6.0])
    baseline = L.leave_one_out_baseline(rewards)
    torch.testing.assert_close(baseline, t([11 / 3, 10 / 3, 3.0, 2.0]))
    # r - b = K/(K-1) (r - mean): (r - 3) * 4/3
    torch.testing.assert_close(rewards - baseline, t([-8 / 3, -4 / 3, 0.0, 4.0]))


def test_group_relative_worked_numbers_with_and_without_std():
    rewards = t([1.0, 2.0, 3.0, 6.0], [0.5, 0.5, 0.5, 0.5])
    std = math.sqrt(14 / 3)  # Bessel-corrected std of 1, 2, 3, 6
    torch.testing.assert_close(
        L.group_relative(rewards), t([-2, -1, 0, 3], [0, 0, 0, 0]) / t([std + 1e-4], [1.0])
    )
    torch.testing.assert_close(
        L.group_relative(rewards, scale="none"), t([-2.0, -1.0, 0.0, 3.0], [0.0] * 4)
    )
    batch_std = float(rewards.flatten().std())
    torch.testing.assert_close(
        L.group_relative(rewards, scale="batch"),
        t([-2, -1, 0, 3], [0, 0, 0, 0]) / (batch_std + 1e-4),
    )


def test_group_advantages_ignore_a_per_prompt_shift():
    g = torch.Generator().manual_seed(3)
    rewards = torch.randn(5, 4, generator=g, dtype=D)
    shift = torch.randn(5, 1, generator=g, dtype=D) * 10
    for scale in ("group", "none"):
        torch.testing.assert_close(
            L.group_relative(rewards + shift, scale=scale), L.group_relative(rewards, scale=scale)
        )
    loo = rewards - L.leave_one_out_baseline(rewards)
    torch.testing.assert_close(rewards + shift - L.leave_one_out_baseline(rewards + shift), loo)
    # The batch std sees the between-prompt spread, so "batch" scaling is not shift-invariant.
    assert not torch.allclose(
        L.group_relative(rewards + shift, scale="batch"), L.group_relative(rewards, scale="batch")
    )


def test_std_scaling_is_scale_invariant_dr_grpo_is_not():
    g = torch.Generator().manual_seed(4)
    rewards = torch.randn(3, 6, generator=g, dtype=D)
    scaled = L.group_relative(10 * rewards, eps=0.0)
    torch.testing.assert_close(scaled, L.group_relative(rewards, eps=0.0))
    none = L.group_relative(rewards, scale="none")
    torch.testing.assert_close(L.group_relative(10 * rewards, scale="none"), 10 * none)


# -------------------------------------------------------------------------- pairwise


def test_pairwise_reward_transforms():
    p = t(0.5, 0.8, 0.1)
    torch.testing.assert_close(L.pairwise_reward(p), p)
    torch.testing.assert_close(L.pairwise_reward(p, transform="centered"), t(0.0, 0.3, -0.4))
    # a Bradley-Terry judge: P = sigmoid(r_y - r_anchor), so the logit recovers the gap
    gap = t(0.0, 1.5, -2.0)
    torch.testing.assert_close(L.pairwise_reward(torch.sigmoid(gap), transform="logit"), gap)


def test_pairwise_reward_refuses_probabilities_outside_the_unit_interval():
    with pytest.raises(ValueError, match=r"p_beats_anchor must lie in \[0.0, 1.0\]"):
        L.pairwise_reward(t(0.5, 1.2))
    with pytest.raises(ValueError, match="transform"):
        L.pairwise_reward(t(0.5), transform="rank")


# ------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("fn", [L.leave_one_out_baseline, L.group_relative])
def test_group_baselines_need_two_samples_per_prompt(fn):
    with pytest.raises(ValueError, match=r"online\.samples_per_prompt >= 2.*K=1"):
        fn(t([1.0], [2.0]))


@pytest.mark.parametrize("fn", [L.leave_one_out_baseline, L.group_relative])
def test_group_baselines_refuse_non_finite_rewards(fn):
    with pytest.raises(ValueError, match="rewards must be finite"):
        fn(t([1.0, float("nan")], [2.0, 3.0]))


def test_gae_refuses_mismatched_shapes_empty_rows_gaps_and_non_finite_values():
    r, v = torch.zeros(2, 4, dtype=D), torch.zeros(2, 4, dtype=D)
    mask = torch.tensor([[F, T_, T_, F], [T_, T_, F, F]])
    with pytest.raises(ValueError, match=r"values must have the shape of rewards \(2, 4\)"):
        L.gae(r, torch.zeros(2, 5, dtype=D), mask)
    with pytest.raises(ValueError, match=r"mask must have dtype torch\.bool"):
        L.gae(r, v, mask.long())
    with pytest.raises(ValueError, match=r"at least 1 entries in every row; rows \[1\]"):
        L.gae(r, v, torch.tensor([[F, T_, T_, F], [F, F, F, F]]))
    with pytest.raises(ValueError, match=r"one contiguous run.*rows \[0\]"):
        L.gae(r, v, torch.tensor([[T_, F, T_, F], [T_, F, F, F]]))
    bad = v.clone()
    bad[0, 1] = float("inf")
    with pytest.raises(ValueError, match="values must be finite"):
        L.gae(r, bad, mask)
    bad[0, 1], bad[0, 3] = 0.0, float("nan")  # outside the mask: fine
    L.gae(r, bad, mask)
    with pytest.raises(ValueError, match="gamma"):
        L.gae(r, v, mask, gamma=1.5)


def test_shaped_rewards_and_whiten_bad_input():
    mask = torch.tensor([[F, T_], [T_, T_]])
    with pytest.raises(ValueError, match=r"B = len\(scores\) = 3"):
        L.shaped_rewards(t(1.0, 2.0, 3.0), mask)
    with pytest.raises(ValueError, match="kl is required when kl_coef > 0"):
        L.shaped_rewards(t(1.0, 2.0), mask, kl_coef=0.1)
    with pytest.raises(ValueError, match="scores must be finite"):
        L.shaped_rewards(t(1.0, float("nan")), mask)
    with pytest.raises(ValueError, match="at least 2 masked entries"):
        L.whiten(t([1.0, 2.0]), torch.tensor([[T_, F]]))
    with pytest.raises(ValueError, match="kl estimator"):
        L.kl_penalty(t([1.0]), t([1.0]), torch.tensor([[T_]]), estimator="k4")
