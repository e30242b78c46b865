"""Listwise losses: worked numbers, K = 2 equivalences with DPO, masks equal slicing, bad input."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from prefkit import losses as L

D = torch.float64


def t(*rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=D)


def random_lists(seed: int, b: int = 4, k: int = 5):
    g = torch.Generator().manual_seed(seed)
    logps = torch.randn(b, k, generator=g, dtype=D) * 2 - 5
    ref = torch.randn(b, k, generator=g, dtype=D) * 2 - 5
    labels = torch.rand(b, k, generator=g, dtype=D)
    return logps, ref, labels


# --------------------------------------------------------------------------------- LiPO-λ


def lipo_reference(logps, ref, labels, beta):
    """Slow, loop-based LiPO-λ written straight from the paper's formula."""
    out = []
    for row in range(logps.shape[0]):
        s = beta * (logps[row] - ref[row])
        k = s.shape[0]
        order = sorted(range(k), key=lambda i: (-float(s[i]), i))
        rank = {item: position + 1 for position, item in enumerate(order)}
        total = torch.zeros((), dtype=D)
        for i, j in itertools.product(range(k), range(k)):
            if labels[row, i] > labels[row, j]:
                gain = abs(2 ** float(labels[row, i]) - 2 ** float(labels[row, j]))
                discount = abs(1 / math.log2(1 + rank[i]) - 1 / math.log2(1 + rank[j]))
                total = total + gain * discount * torch.log1p(torch.exp(-(s[i] - s[j])))
        out.append(total)
    return torch.stack(out)


def test_lipo_lambda_matches_the_loop_reference_with_ranks_from_current_scores():
    logps, ref, labels = random_lists(0, b=3, k=6)
    torch.testing.assert_close(
        L.lipo_lambda(logps, ref, labels, beta=0.3), lipo_reference(logps, ref, labels, 0.3)
    )


def test_lipo_lambda_worked_number_k3():
    # s = (2, 0, 1) (β = 1, ref = 0); ψ = (1, 0, 0.5): ranks by s: item0 -> 1, item2 -> 2, item1 -> 3.
    logps, ref, labels = t([2.0, 0.0, 1.0]), t([0.0, 0.0, 0.0]), t([1.0, 0.0, 0.5])
    inv = {1: 1.0, 2: 1 / math.log2(3), 3: 0.5}
    g = {0: 1.0, 1: 0.0, 2: math.sqrt(2) - 1}
    sp = lambda x: math.log1p(math.exp(-x))  # noqa: E731
    expected = (
        abs(g[0] - g[1]) * abs(inv[1] - inv[3]) * sp(2.0)  # pair (0, 1)
        + abs(g[0] - g[2]) * abs(inv[1] - inv[2]) * sp(1.0)  # pair (0, 2)
        + abs(g[2] - g[1]) * abs(inv[2] - inv[3]) * sp(1.0)  # pair (2, 1)
    )
    assert L.lipo_lambda(logps, ref, labels, beta=1.0).item() == pytest.approx(expected)


def test_lipo_lambda_k2_is_weighted_dpo():
    """LiPO paper: K = 2 with the pair-logistic loss is DPO; the λ weight is |1 − 1/log2 3|."""
    g = torch.Generator().manual_seed(1)
    c, r, rc, rr = (torch.randn(6, generator=g, dtype=D) for _ in range(4))
    lipo = L.lipo_lambda(
        torch.stack([c, r], -1), torch.stack([rc, rr], -1), t(*[[1.0, 0.0]] * 6), beta=0.2
    )
    torch.testing.assert_close(lipo, (1 - 1 / math.log2(3)) * L.dpo(c, r, rc, rr, beta=0.2))


def test_lipo_lambda_weights_carry_no_gradient_and_ties_contribute_nothing():
    logps, ref, _ = random_lists(2, b=2, k=4)
    assert L.lipo_lambda(logps, ref, torch.full_like(logps, 0.3)).abs().max().item() == 0.0
    logps = logps.clone().requires_grad_()
    labels = t([1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.5])
    assert torch.autograd.gradcheck(lambda x: L.lipo_lambda(x, ref, labels, beta=0.5), (logps,))


# ---------------------------------------------------------------------------------- DPO-PL


def test_dpo_pl_k2_equals_dpo():
    g = torch.Generator().manual_seed(3)
    c, r, rc, rr = (torch.randn(6, generator=g, dtype=D) for _ in range(4))
    # labels put the chosen one first in half the rows and second in the others (order of columns
    # must not matter, only the label ranking).
    labels = t(*[[1.0, 0.0]] * 6)
    pl = L.dpo_pl(torch.stack([c, r], -1), torch.stack([rc, rr], -1), labels, beta=0.4)
    torch.testing.assert_close(pl, L.dpo(c, r, rc, rr, beta=0.4))
    flipped = L.dpo_pl(
        torch.stack([r, c], -1), torch.stack([rr, rc], -1), labels.flip(-1), beta=0.4
    )
    torch.testing.assert_close(flipped, pl)


def test_dpo_pl_worked_number_k3():
    # s = (0, 1, 2) with labels ranking item 2 > item 0 > item 1:
    # −[s2 − lse(2, 0, 1)] − [s0 − lse(0, 1)] − [s1 − s1]
    logps, ref, labels = t([0.0, 1.0, 2.0]), t([0.0, 0.0, 0.0]), t([0.5, 0.1, 0.9])
    lse3 = math.log(math.exp(2) + math.exp(0) + math.exp(1))
    lse2 = math.log(math.exp(0) + math.exp(1))
    expected = -(2 - lse3) - (0 - lse2)
    assert L.dpo_pl(logps, ref, labels, beta=1.0).item() == pytest.approx(expected)


# ------------------------------------------------------------------------------------ ADPO


def test_adpo_pairwise_hard_label_with_tau_one_over_beta_equals_dpo_and_soft_equals_cdpo():
    g = torch.Generator().manual_seed(4)
    c, r, rc, rr = (torch.randn(6, generator=g, dtype=D) for _ in range(4))
    logps, ref = torch.stack([c, r], -1), torch.stack([rc, rr], -1)
    beta = 0.25
    hard = L.adpo_pairwise_target(torch.ones(6, dtype=D))
    torch.testing.assert_close(
        L.adpo(logps, ref, hard, tau=1 / beta), L.dpo(c, r, rc, rr, beta=beta)
    )
    soft = L.adpo_pairwise_target(torch.full((6,), 0.9, dtype=D))
    torch.testing.assert_close(
        L.adpo(logps, ref, soft, tau=1 / beta), L.dpo(c, r, rc, rr, beta=beta, label_smoothing=0.1)
    )


def test_adpo_worked_number_and_targets_from_rewards():
    logps, ref = t([math.log(2.0), 0.0, 0.0]), t([0.0, 0.0, 0.0])
    q = t([0.5, 0.25, 0.25])
    # p = softmax(log 2, 0, 0) = (1/2, 1/4, 1/4): cross-entropy = −Σ q log p = H(q)
    expected = -(0.5 * math.log(0.5) + 0.5 * math.log(0.25))
    assert L.adpo(logps, ref, q, tau=1.0).item() == pytest.approx(expected)
    # rewards (0, log 2) with β_r = 1 and no normalisation: q = (1/3, 2/3)
    q = L.adpo_targets_from_rewards(t([0.0, math.log(2.0)]), beta_r=1.0, group_normalize=False)
    torch.testing.assert_close(q, t([1 / 3, 2 / 3]))
    # group-normalised (population std): (−1, 1) / 0.5 -> softmax(−2, 2)
    q = L.adpo_targets_from_rewards(t([3.0, 5.0]), beta_r=0.5)
    torch.testing.assert_close(q, torch.softmax(t([-2.0, 2.0]), -1), atol=1e-7, rtol=0)


def test_adpo_spec_builds_targets_from_scores():
    spec = L.LOSSES["adpo"]
    assert spec.strength_arg == "tau" and spec.targets_from_scores is L.adpo_targets_from_rewards
    logps, ref, scores = random_lists(5)
    mask = torch.ones_like(logps, dtype=torch.bool)
    mask[0, -2:] = False
    target = spec.targets_from_scores(scores, mask)
    assert target[0, -2:].abs().max().item() == 0.0
    torch.testing.assert_close(target.sum(-1), torch.ones(4, dtype=D))
    assert spec.fn(logps, ref, target, tau=0.5, mask=mask).shape == (4,)


# ------------------------------------------------------------------------------------ IRPO


def test_irpo_worked_number():
    # K = 2, β = 1, r = (1, 0), rel = (1, 0), positions (1, 2):
    # w = (1/log2 2, 0) = (1, 0); lse_0 = log(exp(0 − 1)) = −1 -> −(1/2)·log σ(1)
    out = L.irpo(t([1.0, 0.0]), t([0.0, 0.0]), t([1.0, 0.0]), beta=1.0)
    assert out.item() == pytest.approx(0.5 * math.log1p(math.exp(-1.0)))


def test_irpo_positions_discount():
    # Same as above, but item 0 shown at position 3: weight 1/log2(4) = 1/2.
    out = L.irpo(
        t([1.0, 0.0]), t([0.0, 0.0]), t([1.0, 0.0]), beta=1.0, positions=torch.tensor([[3, 1]])
    )
    assert out.item() == pytest.approx(0.25 * math.log1p(math.exp(-1.0)))


# -------------------------------------------------------------------- masks equal slicing

LISTWISE = ["lipo_lambda", "dpo_pl", "adpo", "irpo"]


def listwise_call(name, logps, ref, labels, mask=None, positions=None):
    fn = L.LOSSES[name].fn
    if name == "adpo":
        labels = L.adpo_targets_from_rewards(labels, mask, beta_r=1.0)
        return fn(logps, ref, labels, tau=0.7, mask=mask)
    if name == "irpo":
        return fn(logps, ref, labels, beta=0.8, mask=mask, positions=positions)
    return fn(logps, ref, labels, beta=0.3, mask=mask)


@pytest.mark.parametrize("name", LISTWISE)
def test_mask_equals_slicing_and_padding_gets_no_gradient(name):
    logps, ref, labels = random_lists(6, b=1, k=5)
    keep = torch.tensor([[True, False, True, True, False]])
    padded = logps.clone()
    padded[~keep] = math.nan  # garbage in padded slots must not matter
    padded.requires_grad_()
    positions = torch.tensor([[1, 1, 2, 3, 1]])
    masked = listwise_call(name, padded, ref, labels, mask=keep, positions=positions)
    sliced_logps = logps[keep].reshape(1, 3).clone().requires_grad_()
    sliced = listwise_call(name, sliced_logps, ref[keep].reshape(1, 3), labels[keep].reshape(1, 3))
    torch.testing.assert_close(masked, sliced)
    masked.sum().backward()
    sliced.sum().backward()
    assert torch.isfinite(padded.grad).all()
    assert padded.grad[~keep].abs().max().item() == 0.0
    torch.testing.assert_close(padded.grad[keep].reshape(1, 3), sliced_logps.grad)


@pytest.mark.parametrize("name", LISTWISE)
def test_listwise_gradcheck(name):
    logps, ref, labels = random_lists(7, b=2, k=4)
    mask = torch.tensor([[True, True, True, False], [True, True, True, True]])
    logps = logps.requires_grad_()
    assert torch.autograd.gradcheck(
        lambda x: listwise_call(name, x, ref, labels, mask=mask), (logps,)
    )


# ------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize("name", LISTWISE)
def test_listwise_bad_input(name):
    logps, ref, labels = random_lists(8, b=2, k=3)
    fn = L.LOSSES[name].fn
    target = torch.full_like(logps, 1 / 3)
    third = target if name == "adpo" else labels
    with pytest.raises(ValueError, match="ref_logps"):
        fn(logps, ref[:, :2], third)
    with pytest.raises(ValueError, match=r"\[B, K\]"):
        fn(logps[0], ref[0], third[0])
    with pytest.raises(ValueError, match="at least 2"):
        fn(logps, ref, third, mask=torch.tensor([[True, True, True], [False, False, False]]))
    with pytest.raises(ValueError, match="at least 2"):
        fn(logps, ref, third, mask=torch.tensor([[True, True, True], [False, True, False]]))
    with pytest.raises(ValueError, match="mask"):
        fn(logps, ref, third, mask=torch.ones(2, 3))
    bad = logps.clone()
    bad[0, 0] = math.inf
    with pytest.raises(ValueError, match="logps must be finite"):
        fn(bad, ref, third)
    strength = L.LOSSES[name].strength_arg
    with pytest.raises(ValueError, match=strength):
        fn(logps, ref, third, **{strength: 0.0})


def test_adpo_targets_must_be_distributions():
    logps, ref, _ = random_lists(9, b=2, k=3)
    with pytest.raises(ValueError, match="target rows must sum to 1"):
        L.adpo(logps, ref, torch.full_like(logps, 0.5))
    with pytest.raises(ValueError, match="non-negative"):
        L.adpo(logps, ref, t([1.5, -0.5, 0.0], [1.0, 0.0, 0.0]))
    mask = torch.tensor([[True, True, False], [True, True, True]])
    with pytest.raises(ValueError, match="sum to 1 over the unmasked entries"):
        L.adpo(logps, ref, t([0.5, 0.25, 0.25], [1.0, 0.0, 0.0]), mask=mask)
    with pytest.raises(ValueError, match="label"):
        L.adpo_pairwise_target(torch.tensor([1.2], dtype=D))
