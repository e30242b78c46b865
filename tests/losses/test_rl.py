"""RL policy losses: worked numbers (PPO clip, value clip, GRPO, Dr. GRPO, RLOO), the step
reduction under micro-batching, gradchecks, the policy-gradient identity, bad input."""

from __future__ import annotations

import math

import pytest
import torch

from prefkit import losses as L

D = torch.float64
F, T_ = False, True
GRPO_FAMILY = ("grpo", "bnpo", "dr_grpo", "dapo")


def t(*rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=D)


def random_batch(seed: int, rows: int = 6, width: int = 5) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    logps = -torch.rand(rows, width, generator=g, dtype=D) - 0.1
    lengths = torch.randint(1, width + 1, (rows,), generator=g)
    return {
        "logps": logps,
        "old": logps + 0.3 * torch.randn(rows, width, generator=g, dtype=D),
        "ref": logps + 0.3 * torch.randn(rows, width, generator=g, dtype=D),
        "adv": torch.randn(rows, generator=g, dtype=D),
        "adv_tok": torch.randn(rows, width, generator=g, dtype=D),
        "mask": torch.arange(width)[None, :] < lengths[:, None],
    }


# ------------------------------------------------------------------------------- PPO


def test_ppo_clipped_policy_loss_worked_numbers():
    # ratios 1.5, 0.5, 1.1 with A = 1, 1, -2 and eps 0.2:
    #   -min(1.5, 1.2) = -1.2;  -min(0.5, 0.8) = -0.5;  -min(-2.2, -2.2) = 2.2  -> sum 0.5
    # ratios 0.5, 1.5 with A = -1: -min(-0.5, -0.8) = 0.8 (clipped); -min(-1.5, -1.2) = 1.5
    old = torch.zeros(2, 3, dtype=D)
    logps = t([math.log(1.5), math.log(0.5), math.log(1.1)], [math.log(0.5), math.log(1.5), 0.0])
    adv = t([1.0, 1.0, -2.0], [-1.0, -1.0, 0.0])
    mask = torch.tensor([[T_, T_, T_], [T_, T_, F]])
    per_seq = L.ppo(logps, old, None, adv, mask, cliprange=0.2)
    torch.testing.assert_close(per_seq, t(0.5, 2.3))
    # reduction "tokens": (0.5 + 2.3) / 5 response tokens
    torch.testing.assert_close(
        L.reduce_to_step(per_seq, mask, "tokens"), torch.tensor(0.56, dtype=D)
    )


def test_ppo_value_loss_worked_numbers():
    # V = 1.0, old 0.5, R = 2.0: clip(1.0, 0.3, 0.7) = 0.7; max(1, 1.69) -> 0.5 * 1.69 = 0.845
    # V = 0.0, old 0.5, R = 0.4: clip -> 0.3; max(0.16, 0.01) -> 0.08;  sum 0.925 * vf_coef 0.1
    mask = torch.tensor([[T_, T_, F]])
    out = L.ppo_value(t([1.0, 0.0, 9.0]), t([0.5, 0.5, 9.0]), t([2.0, 0.4, 0.0]), mask,
                      cliprange_value=0.2, vf_coef=0.1)  # fmt: skip
    torch.testing.assert_close(out, t(0.0925))


def test_ppo_kl_loss_term_and_entropy_bonus():
    logps, old = t([-1.0, -2.0]), t([-1.0, -2.0])
    ref, mask = t([-1.5, -2.0]), torch.tensor([[T_, T_]])
    adv, entropies = t(0.0), t([0.3, 0.7])
    # ratio 1, A = 0: only the extras. k3 at d = -0.5: e^-0.5 + 0.5 - 1
    out = L.ppo(logps, old, ref, adv, mask, kl_loss_coef=0.1, entropies=entropies,
                entropy_coef=0.01)  # fmt: skip
    torch.testing.assert_close(out, t(0.1 * (math.exp(-0.5) - 0.5) - 0.01 * 1.0))
    # k1 in the loss: logp - ref = 0.5 at t0
    k1 = L.ppo(logps, old, ref, adv, mask, kl_loss_coef=0.1, kl_loss_estimator="k1")
    torch.testing.assert_close(k1, t(0.05))


# ------------------------------------------------------------------- GRPO and variants


def grpo_example() -> tuple[torch.Tensor, ...]:
    """Row 0 (A = +1): ratios 1.5, 1.0, ref - logp = 0.5 at t0. Row 1 (A = -1): ratios
    0.5, 1.0, 1.3."""
    old = torch.zeros(2, 3, dtype=D)
    logps = t([math.log(1.5), 0.0, 0.0], [math.log(0.5), 0.0, math.log(1.3)])
    ref = logps + t([0.5, 0.0, 0.0], [0.0, 0.0, 0.0])
    mask = torch.tensor([[T_, T_, F], [T_, T_, T_]])
    return logps, old, ref, t(1.0, -1.0), mask


K3 = math.exp(0.5) - 0.5 - 1  # 0.14872127...
ROW0 = (-1.2 + 0.1 * K3) + (-1.0)  # -min(1.5, 1.2) + beta k3; -min(1, 1.2)
ROW1 = 0.8 + 1.0 + 1.3  # -min(-0.5, -0.8); -min(-1, -1); -min(-1.3, -1.2)


def test_grpo_clipped_objective_worked_numbers():
    per_seq = L.grpo(*grpo_example(), beta=0.1, epsilon=0.2)
    torch.testing.assert_close(per_seq, t(ROW0 / 2, ROW1 / 3))
    loss = L.reduce_to_step(per_seq, grpo_example()[-1], "sequences")
    torch.testing.assert_close(loss, torch.tensor((ROW0 / 2 + ROW1 / 3) / 2, dtype=D))


def test_dr_grpo_normalises_by_a_constant_length_and_dapo_by_tokens():
    mask = grpo_example()[-1]
    dr = L.dr_grpo(*grpo_example(), beta=0.1, max_completion_length=4)
    torch.testing.assert_close(dr, t(ROW0 / 4, ROW1 / 4))
    # sum over all tokens / (2 sequences * L_max 4), no 1/|o_i|
    torch.testing.assert_close(
        L.reduce_to_step(dr, mask, "sequences"), torch.tensor((ROW0 + ROW1) / 8, dtype=D)
    )
    dapo = L.dapo(*grpo_example(), beta=0.1, epsilon_high=0.2)
    torch.testing.assert_close(
        L.reduce_to_step(dapo, mask, "tokens"), torch.tensor((ROW0 + ROW1) / 5, dtype=D)
    )
    bnpo = L.bnpo(*grpo_example(), beta=0.1)
    torch.testing.assert_close(bnpo, dapo)


def test_clip_higher_changes_only_the_upper_bound():
    # Row 0's ratio 1.5 with A > 0 is clipped at 1 + eps_high: 1.28 instead of 1.2.
    low = L.grpo(*grpo_example(), beta=0.0, epsilon=0.2)
    high = L.grpo(*grpo_example(), beta=0.0, epsilon=0.2, epsilon_high=0.28)
    torch.testing.assert_close(high - low, t(-0.08 / 2, 0.0))


@pytest.mark.parametrize("name", (*GRPO_FAMILY, "ppo", "rloo", "reinforce_pp"))
def test_gradient_at_the_sampling_policy_is_the_policy_gradient(name):
    # At logps == old_logps (ratio 1) the clipped surrogate's gradient is -A per token,
    # weighted by each method's token normalisation.
    x = random_batch(5)
    spec = L.LOSSES[name]
    logps = x["old"].clone().requires_grad_()
    adv = x["adv_tok"] if name in ("ppo", "reinforce_pp") else x["adv"]
    extra = {"max_completion_length": 5} if name == "dr_grpo" else {}
    kl = {"beta": 0.0} if name in GRPO_FAMILY else {}
    per_seq = spec.fn(logps, x["old"], x["ref"], adv, x["mask"], **kl, **extra)
    L.reduce_to_step(per_seq, x["mask"], spec.reduction).backward()
    mask, n = x["mask"], x["mask"].sum(-1, keepdim=True).to(D)
    a = adv if adv.dim() == 2 else adv[:, None].expand_as(mask)
    weight = {
        "grpo": 1 / (n * 6), "dr_grpo": torch.full_like(n, 1 / (5 * 6)),
        "rloo": torch.full_like(n, 1 / 6),
    }.get(name, torch.full_like(n, 1 / float(mask.sum())))  # fmt: skip
    torch.testing.assert_close(logps.grad, (-a * weight) * mask)


# ------------------------------------------------------------------------------ RLOO


def test_rloo_uses_a_clipped_sequence_ratio():
    # sequence log-ratio log(1.5): A = 1 -> -min(1.5, 1.2) = -1.2; A = -1 -> -min(-1.5, -1.2) = 1.5
    logps = t([math.log(1.5) / 2, math.log(1.5) / 2, 7.0], [math.log(1.5), 0.0, 0.0])
    old, mask = torch.zeros(2, 3, dtype=D), torch.tensor([[T_, T_, F], [T_, T_, T_]])
    torch.testing.assert_close(L.rloo(logps, old, None, t(1.0, -1.0), mask), t(-1.2, 1.5))


# ------------------------------------------------------------------------- reduction


@pytest.mark.parametrize("name", ("grpo", "dr_grpo", "dapo", "rloo", "ppo", "reinforce_pp"))
def test_micro_batch_shares_sum_to_the_full_batch_loss(name):
    x = random_batch(6, rows=8)
    spec = L.LOSSES[name]
    adv = x["adv_tok"] if name in ("ppo", "reinforce_pp") else x["adv"]
    extra = {"max_completion_length": 5} if name == "dr_grpo" else {}

    def loss(rows: slice, step: L.StepSize | None) -> torch.Tensor:
        per_seq = spec.fn(x["logps"][rows], x["old"][rows], x["ref"][rows], adv[rows],
                          x["mask"][rows], **extra)  # fmt: skip
        return L.reduce_to_step(per_seq, x["mask"][rows], spec.reduction, step)

    whole = loss(slice(None), None)
    parts = [slice(0, 3), slice(3, 8)]  # unequal micro-batches
    step = L.StepSize.of(*(x["mask"][p] for p in parts))
    torch.testing.assert_close(sum(loss(p, step) for p in parts), whole)


def test_bnpo_depends_on_the_micro_batching_and_averages_micro_batch_token_means():
    x = random_batch(7, rows=8)
    per_seq = L.bnpo(x["logps"], x["old"], x["ref"], x["adv"], x["mask"])
    m = x["mask"]
    step = L.StepSize(sequences=8, tokens=int(m.sum()), micro_batches=2)
    parts = [slice(0, 4), slice(4, 8)]
    shares = [L.reduce_to_step(per_seq[p], m[p], "micro_tokens", step) for p in parts]
    expected = sum(per_seq[p].sum() / m[p].sum() for p in parts) / 2
    torch.testing.assert_close(sum(shares), expected)
    assert not torch.allclose(sum(shares), per_seq.sum() / m.sum())


# ------------------------------------------------------------------------- gradchecks


@pytest.mark.parametrize("name", (*GRPO_FAMILY, "ppo", "rloo", "reinforce_pp"))
def test_gradcheck(name):
    x = random_batch(8, rows=4, width=4)
    spec = L.LOSSES[name]
    adv = x["adv_tok"] if name in ("ppo", "reinforce_pp") else x["adv"]
    extra = {"max_completion_length": 4} if name == "dr_grpo" else {}
    if name in ("grpo", "bnpo"):
        extra["beta"] = 0.2
    logps = x["logps"].clone().requires_grad_()

    def f(lp: torch.Tensor) -> torch.Tensor:
        return spec.fn(lp, x["old"], x["ref"], adv, x["mask"], **extra)

    assert torch.autograd.gradcheck(f, (logps,))


def test_gradcheck_value_loss_and_entropy():
    x = random_batch(9, rows=3, width=4)
    values = torch.randn(3, 4, dtype=D, generator=torch.Generator().manual_seed(0))
    values.requires_grad_()
    old, returns = values.detach() + 0.5, values.detach() - 0.1
    assert torch.autograd.gradcheck(lambda v: L.ppo_value(v, old, returns, x["mask"]), (values,))
    entropies = torch.rand(3, 4, dtype=D).requires_grad_()
    assert torch.autograd.gradcheck(
        lambda e: L.ppo(x["logps"], x["old"], None, x["adv_tok"], x["mask"], entropies=e,
                        entropy_coef=0.3),
        (entropies,),
    )  # fmt: skip


def test_targets_are_detached():
    x = random_batch(10, rows=3, width=4)
    old, ref = x["old"].clone().requires_grad_(), x["ref"].clone().requires_grad_()
    adv = x["adv"].clone().requires_grad_()
    logps = x["logps"].clone().requires_grad_()
    L.grpo(logps, old, ref, adv, x["mask"], beta=0.1).sum().backward()
    assert old.grad is None and ref.grad is None and adv.grad is None
    assert logps.grad is not None


# ------------------------------------------------------------------------- bad input


def test_token_losses_refuse_bad_shapes_masks_and_values():
    x = random_batch(11, rows=3, width=4)
    args = (x["logps"], x["old"], x["ref"], x["adv"], x["mask"])
    with pytest.raises(ValueError, match=r"old_logps must have the shape of logps \(3, 4\)"):
        L.grpo(x["logps"], x["old"][:, :3], x["ref"], x["adv"], x["mask"])
    with pytest.raises(ValueError, match=r"advantages must have shape \[B\] = \(3,\)"):
        L.grpo(*args[:3], x["adv"][:2], x["mask"])
    with pytest.raises(ValueError, match=r"logps must have shape \[B, T\]"):
        L.grpo(x["logps"][0], x["old"][0], x["ref"][0], x["adv"], x["mask"][0])
    with pytest.raises(ValueError, match=r"mask must have dtype torch\.bool"):
        L.grpo(*args[:4], x["mask"].double())
    empty = x["mask"].clone()
    empty[1] = False
    with pytest.raises(ValueError, match=r"rows \[1\] keep fewer"):
        L.grpo(*args[:4], empty)
    bad = x["logps"].clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="logps must be finite"):
        L.grpo(bad, *args[1:])
    with pytest.raises(ValueError, match="advantages must be finite"):
        L.grpo(*args[:3], t(1.0, float("inf"), 0.0), x["mask"])
    with pytest.raises(ValueError, match="ref_logps is required when beta > 0"):
        L.grpo(x["logps"], x["old"], None, x["adv"], x["mask"], beta=0.1)
    with pytest.raises(ValueError, match=r"clip_low must be a finite number > 0"):
        L.grpo(*args, epsilon=0.0)
    with pytest.raises(ValueError, match="per-token advantages"):
        L.reinforce_pp(*args)
    with pytest.raises(ValueError, match="entropies"):
        L.ppo(*args, entropy_coef=0.1)


def test_dr_grpo_needs_the_generation_budget():
    x = random_batch(12, rows=3, width=4)
    args = (x["logps"], x["old"], x["ref"], x["adv"], x["mask"])
    with pytest.raises(ValueError, match=r"online\.max_new_tokens"):
        L.dr_grpo(*args)
    full = torch.ones(3, 4, dtype=torch.bool)
    with pytest.raises(ValueError, match=r"4 tokens, more than max_completion_length=3"):
        L.dr_grpo(*args[:4], full, max_completion_length=3)


def test_step_size_and_reduction_bad_input():
    with pytest.raises(ValueError, match=r"StepSize\.tokens must be a positive integer"):
        L.StepSize(sequences=2, tokens=0)
    with pytest.raises(ValueError, match="reduction must be one of"):
        L.reduce_to_step(t(1.0), torch.tensor([[T_]]), "mean")
    with pytest.raises(ValueError, match=r"B = len\(per_sequence\) = 2"):
        L.reduce_to_step(t(1.0, 2.0), torch.tensor([[T_]]), "tokens")
