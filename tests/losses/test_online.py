"""Online objectives: worked numbers, gradchecks, the mirror-descent equivalence, bad input."""

from __future__ import annotations

import math

import pytest
import torch

from prefkit import losses as L
from prefkit.losses import online_ipo

D = torch.float64


def t(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=D)


# ---------------------------------------------------------------- online_ipo


def test_online_ipo_worked_numbers():
    # h_c = -1 - (-2) = 1; h_r = -3 - (-2.5) = -0.5; h_c - h_r = 1.5
    # target = 0.2 / 0.1 = 2  ->  (1.5 - 2)^2 = 0.25
    # second row: h gap = 0 - 0 = 0, target = -0.5 / 0.1 = -5 -> 25
    loss = online_ipo(
        t(-1.0, -1.0), t(-3.0, -1.0), t(-2.0, -1.0), t(-2.5, -1.0), t(0.2, -0.5), beta=0.1
    )
    torch.testing.assert_close(loss, t(0.25, 25.0))


def test_online_ipo_swap_chosen_rejected_and_gap_sign_is_invariant():
    g = torch.Generator().manual_seed(0)
    a, b, c, d = (torch.randn(6, generator=g, dtype=D) for _ in range(4))
    gap = torch.rand(6, generator=g, dtype=D) * 2 - 1
    torch.testing.assert_close(
        online_ipo(a, b, c, d, gap, beta=0.3), online_ipo(b, a, d, c, -gap, beta=0.3)
    )


def test_online_ipo_gradcheck():
    g = torch.Generator().manual_seed(1)
    chosen = torch.randn(5, generator=g, dtype=D, requires_grad=True)
    rejected = torch.randn(5, generator=g, dtype=D, requires_grad=True)
    ref_c, ref_r = torch.randn(5, generator=g, dtype=D), torch.randn(5, generator=g, dtype=D)
    gap = torch.rand(5, generator=g, dtype=D) * 2 - 1
    assert torch.autograd.gradcheck(
        lambda c, r: online_ipo(c, r, ref_c, ref_r, gap, beta=0.2), (chosen, rejected)
    )


def test_online_ipo_target_is_detached():
    gap = torch.tensor([0.3], dtype=D, requires_grad=True)
    chosen = torch.tensor([-1.0], dtype=D, requires_grad=True)
    online_ipo(chosen, t(-2.0), t(-1.5), t(-1.0), gap, beta=0.1).sum().backward()
    assert gap.grad is None
    # d/dc (c - (-2) - (-1.5 - (-1)) - 3)^2 = 2 * (1 + 0.5 - 3) = -3
    torch.testing.assert_close(chosen.grad, t(-3.0))


@pytest.mark.parametrize("n_actions, beta, lr", [(5, 0.1, 0.05), (8, 0.5, 0.3)])
def test_online_ipo_sgd_step_equals_mirror_descent_step(n_actions, beta, lr):
    """algorithms.md §3.3: one SGD step on the all-pairs loss is an OMD step with η = 4 lr/(N β)."""
    g = torch.Generator().manual_seed(n_actions)
    upper = torch.rand(n_actions, n_actions, generator=g, dtype=D).triu(1)
    preference = upper + (1 - upper.T).tril(-1) + 0.5 * torch.eye(n_actions, dtype=D)
    assert torch.allclose(preference + preference.T, torch.ones_like(preference))
    log_ref = torch.log_softmax(torch.randn(n_actions, generator=g, dtype=D), 0)
    logits = torch.randn(n_actions, generator=g, dtype=D, requires_grad=True)

    log_pi = torch.log_softmax(logits, 0)
    pi_t = log_pi.exp().detach()
    win = preference @ pi_t  # P(y ≻ q) with q = π_t, exact target
    y, y_prime = torch.meshgrid(torch.arange(n_actions), torch.arange(n_actions), indexing="ij")
    y, y_prime = y.flatten(), y_prime.flatten()
    loss = online_ipo(
        log_pi[y], log_pi[y_prime], log_ref[y], log_ref[y_prime], win[y] - win[y_prime], beta=beta
    ).mean()
    loss.backward()
    with torch.no_grad():
        new_logits = logits - lr * logits.grad
        eta = 4 * lr / (n_actions * beta)
        mirror = (1 - eta * beta) * log_pi + eta * beta * log_ref + eta * win
        torch.testing.assert_close(
            torch.log_softmax(new_logits, 0), torch.log_softmax(mirror, 0), atol=1e-12, rtol=0
        )


def test_online_ipo_bad_input():
    with pytest.raises(ValueError, match="beta"):
        online_ipo(t(0.0), t(0.0), t(0.0), t(0.0), t(0.1), beta=0.0)
    with pytest.raises(ValueError, match="preference_gap"):
        online_ipo(t(0.0), t(0.0), t(0.0), t(0.0), t(0.1, 0.2))
    with pytest.raises(ValueError, match="preference_gap"):
        online_ipo(t(0.0), t(0.0), t(0.0), t(0.0), t(1.5))
    with pytest.raises(ValueError, match="chosen_logps must be finite"):
        online_ipo(t(math.nan), t(0.0), t(0.0), t(0.0), t(0.1))


# ---------------------------------------------------------------- Nash-MD-PG


def test_nash_md_pg_gradient_is_the_paper_estimate():
    """∇ loss = −∇ log π(y) · (P(y ≻ y') − ½ − β (log π − log π_ref)(y))."""
    logps = t(-2.0, -1.0).requires_grad_()
    ref = t(-3.0, -1.0)
    preference = t(0.9, 0.2)
    loss = L.nash_md_pg(logps, ref, preference, beta=0.1)
    loss.sum().backward()
    # row 0: −(0.9 − 0.5 − 0.1·1) = −0.3; row 1: −(0.2 − 0.5 − 0) = 0.3
    torch.testing.assert_close(logps.grad, t(-0.3, 0.3))
    torch.testing.assert_close(loss.detach(), t(-0.3 * -2.0, 0.3 * -1.0))


def test_nash_md_pg_expected_gradient_on_a_bandit_is_the_regularised_game_gradient():
    """Exact expectation over y ~ π, y' ~ q of the per-sample gradient equals the gradient of
    P(π ≻ q) − β KL(π ‖ π_ref) (the control variate ½ has zero mean)."""
    g = torch.Generator().manual_seed(3)
    n, beta = 4, 0.2
    upper = torch.rand(n, n, generator=g, dtype=D).triu(1)
    preference = upper + (1 - upper.T).tril(-1) + 0.5 * torch.eye(n, dtype=D)
    logits = torch.randn(n, generator=g, dtype=D, requires_grad=True)
    log_ref = torch.log_softmax(torch.randn(n, generator=g, dtype=D), 0)
    q = torch.softmax(torch.randn(n, generator=g, dtype=D), 0)
    log_pi = torch.log_softmax(logits, 0)
    pi = log_pi.exp().detach()
    # E_{y~π} E_{y'~q} of the surrogate = Σ_y π(y) Σ_y' q(y') loss(y, y')
    y, y_prime = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    per_pair = L.nash_md_pg(
        log_pi[y].flatten(), log_ref[y].flatten(), preference[y, y_prime].flatten(), beta=beta
    )
    weights = (pi[:, None] * q[None, :]).flatten()
    (grad_surrogate,) = torch.autograd.grad((weights * per_pair).sum(), logits)
    objective = (
        torch.softmax(logits, 0) @ preference @ q
        - beta * (torch.softmax(logits, 0) * (torch.log_softmax(logits, 0) - log_ref)).sum()
    )
    (grad_objective,) = torch.autograd.grad(objective, logits)
    torch.testing.assert_close(grad_surrogate, -grad_objective)


# ---------------------------------------------------------------- P3O


def p3o_inputs(seed=4, b=5):
    g = torch.Generator().manual_seed(seed)
    x = [torch.randn(b, generator=g, dtype=D) - 2 for _ in range(8)]
    return x


@pytest.mark.parametrize("variant", ["separate", "joint"])
def test_p3o_is_unchanged_by_a_per_prompt_reward_shift(variant):
    l1, l2, o1, o2, r1, r2, q1, q2 = p3o_inputs()
    shift = torch.tensor([100.0, -3.0, 0.5, 7.0, -50.0], dtype=D)
    l1, l2 = l1.requires_grad_(), l2.requires_grad_()
    base = L.p3o(l1, l2, o1, o2, r1, r2, q1, q2, beta=0.1, variant=variant)
    grads = torch.autograd.grad(base.sum(), (l1, l2))
    shifted = L.p3o(l1, l2, o1, o2, r1, r2, q1 + shift, q2 + shift, beta=0.1, variant=variant)
    shifted_grads = torch.autograd.grad(shifted.sum(), (l1, l2))
    torch.testing.assert_close(shifted, base)
    for a, b in zip(grads, shifted_grads):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("variant", ["separate", "joint"])
def test_p3o_gradient_at_old_policy_is_the_pairwise_policy_gradient(variant):
    """At θ = θ_old: ∇ = −(Δ/2)(∇ log π(y1) − ∇ log π(y2)) with KL-shaped Δ (Thm 1)."""
    _, _, o1, o2, r1, r2, q1, q2 = p3o_inputs(5)
    l1, l2 = o1.clone().requires_grad_(), o2.clone().requires_grad_()
    beta = 0.3
    L.p3o(l1, l2, o1, o2, r1, r2, q1, q2, beta=beta, variant=variant).sum().backward()
    delta = (q1 - beta * (o1 - r1)) - (q2 - beta * (o2 - r2))
    torch.testing.assert_close(l1.grad, -delta / 2)
    torch.testing.assert_close(l2.grad, delta / 2)


def test_p3o_clipping_worked_number():
    # joint: ρ = exp(0.5 − 0) = 1.6487 > 1.2 with Δ/2 = 1 > 0 -> min(ρ, 1.2) = 1.2 -> loss −1.2
    z = t(0.0)
    out = L.p3o(t(0.5), z, z, z, None, None, t(2.0), z, beta=0.0, clip_eps=0.2, variant="joint")
    torch.testing.assert_close(out, t(-1.2))
    # separate: ρ1 = e^0.5 (clipped to 1.2, Δ/2 = 1), ρ2 = 1 -> −(1.2 − 1)
    out = L.p3o(t(0.5), z, z, z, None, None, t(2.0), z, beta=0.0, clip_eps=0.2, variant="separate")
    torch.testing.assert_close(out, t(-0.2))


# ---------------------------------------------------------------- DNO, SPPO, GPO


def test_dno_worked_number_and_gradcheck():
    # z = (−1 − −2) − (−3 − −2) = 2; β = 0.5 -> logit 1; p = σ(0.8 − 0.3) = σ(0.5)
    p = 1 / (1 + math.exp(-0.5))
    expected = p * math.log1p(math.exp(-1.0)) + (1 - p) * math.log1p(math.exp(1.0))
    out = L.dno(t(-1.0), t(-3.0), t(-2.0), t(-2.0), t(0.8), t(0.3), beta=0.5)
    assert out.item() == pytest.approx(expected)
    g = torch.Generator().manual_seed(6)
    a, b = (torch.randn(4, generator=g, dtype=D, requires_grad=True) for _ in range(2))
    c, d = torch.randn(4, generator=g, dtype=D), torch.randn(4, generator=g, dtype=D)
    w1, w2 = torch.rand(4, generator=g, dtype=D), torch.rand(4, generator=g, dtype=D)
    assert torch.autograd.gradcheck(lambda x, y: L.dno(x, y, c, d, w1, w2, beta=0.3), (a, b))


def test_sppo_with_hard_win_rates_sums_to_sppo_hard():
    g = torch.Generator().manual_seed(7)
    c, r, rc, rr = (torch.randn(5, generator=g, dtype=D) for _ in range(4))
    ones, zeros = torch.ones(5, dtype=D), torch.zeros(5, dtype=D)
    total = L.sppo(c, rc, ones, beta=0.2) + L.sppo(r, rr, zeros, beta=0.2)
    torch.testing.assert_close(total, L.sppo_hard(c, r, rc, rr, beta=0.2))


def test_sppo_and_gpo_worked_numbers():
    # SPPO: h = 0.5, target (0.75 − 0.5)/0.5 = 0.5 -> 0;  GPO: h = 0.5, target 0.2/0.1 = 2 -> 2.25
    assert L.sppo(t(-1.0), t(-1.5), t(0.75), beta=0.5).item() == pytest.approx(0.0)
    assert L.gpo(t(-1.0), t(-1.5), t(0.2), beta=0.1).item() == pytest.approx(2.25)


# ---------------------------------------------------------------- GRAO, SuperHF


def test_grao_worked_number_and_advantages():
    # J_exp = −4/2 = −2, J_imit = −3/3 = −1, Â_o = 1, Â_y = 2, β = 0.5, λ = 0.6:
    # J = 1·(−2) + 0.5·2·(−1) + 0.6·1·(−2 − (−1)) = −2 − 1 − 0.6 = −3.6 -> loss 3.6
    out = L.grao(t(-4.0), t(2.0), t(-3.0), t(3.0), t(1.0), t(2.0), beta=0.5, lam=0.6)
    assert out.item() == pytest.approx(3.6)
    adv, answer = L.grao_advantages(t(0.0, 2.0)[None], t(3.0))
    torch.testing.assert_close(adv, t(-1.0, 1.0)[None], atol=1e-7, rtol=0)
    torch.testing.assert_close(answer, t(2.0, 2.0)[None], atol=1e-7, rtol=0)


def test_grao_gradcheck():
    g = torch.Generator().manual_seed(8)
    a, b = (torch.randn(4, generator=g, dtype=D, requires_grad=True) for _ in range(2))
    n = t(1.0, 2.0, 3.0, 4.0)
    adv, adv_y = torch.randn(4, generator=g, dtype=D), torch.randn(4, generator=g, dtype=D)
    assert torch.autograd.gradcheck(lambda x, y: L.grao(x, n, y, n, adv, adv_y), (a, b))


def test_superhf_worked_numbers():
    # NLL per token 6/3 = 2; KL estimate (−6 − −7.5)/3 = 0.5; β = 0.4 -> 2.2
    assert L.superhf(t(-6.0), t(-7.5), t(3.0), beta=0.4).item() == pytest.approx(2.2)
    # negative KL estimate is clamped at 0
    assert L.superhf(t(-6.0), t(-3.0), t(3.0), beta=0.4).item() == pytest.approx(2.0)
    # an explicit full-vocabulary KL replaces the estimate
    assert L.superhf(t(-6.0), t(-3.0), t(3.0), beta=0.4, token_kl=t(1.0)).item() == pytest.approx(
        2.4
    )


# ---------------------------------------------------------------- bad input


def test_online_bad_input():
    z = t(0.0)
    with pytest.raises(ValueError, match="preference"):
        L.nash_md_pg(z, z, t(1.5))
    with pytest.raises(ValueError, match="variant"):
        L.p3o(z, z, z, z, z, z, z, z, variant="v3")
    with pytest.raises(ValueError, match="ref_logps_1 and ref_logps_2 are required"):
        L.p3o(z, z, z, z, None, None, z, z, beta=0.1)
    with pytest.raises(ValueError, match="clip_eps"):
        L.p3o(z, z, z, z, z, z, z, z, clip_eps=0.0)
    with pytest.raises(ValueError, match="rewards_2"):
        L.p3o(z, z, z, z, z, z, z, t(0.0, 1.0))
    with pytest.raises(ValueError, match="chosen_win_rate"):
        L.dno(z, z, z, z, t(2.0), z)
    with pytest.raises(ValueError, match="win_rate"):
        L.sppo(z, z, t(-0.1))
    with pytest.raises(ValueError, match="answer_lengths"):
        L.grao(z, t(1.0), z, t(0.0), z, z)
    with pytest.raises(ValueError, match="lam"):
        L.grao(z, t(1.0), z, t(1.0), z, z, lam=-1.0)
    with pytest.raises(ValueError, match="lengths"):
        L.superhf(z, z, t(1.0, 2.0))
    with pytest.raises(ValueError, match="logps must be finite"):
        L.superhf(t(math.inf), z, t(1.0))


# nash_md_pg is left out on purpose: it is a surrogate whose KL coefficient is detached, so its
# analytic gradient is (correctly) not the numerical derivative of its value; its gradient is
# checked against the paper's estimator above.
ONLINE_CALLS = {
    "p3o_joint": lambda a, b, x: L.p3o(a, b, x[0], x[1], x[2], x[3], x[4], x[5], variant="joint"),
    "p3o_separate": lambda a, b, x: L.p3o(
        a, b, x[0], x[1], x[2], x[3], x[4], x[5], variant="separate"
    ),
    "sppo": lambda a, b, x: L.sppo(a, x[0], x[4], beta=0.3),
    "gpo": lambda a, b, x: L.gpo(a, x[0], x[4] - 0.5, beta=0.3),
    "superhf": lambda a, b, x: L.superhf(a, x[0], t(1.0, 2.0, 3.0, 4.0), token_kl=b.exp()),
}


@pytest.mark.parametrize("name", sorted(ONLINE_CALLS))
def test_online_gradcheck(name):
    g = torch.Generator().manual_seed(11)
    a = (torch.randn(4, generator=g, dtype=D) * 0.05 - 1).requires_grad_()
    b = (torch.randn(4, generator=g, dtype=D) * 0.05 - 1).requires_grad_()
    # old log-probs near the current ones so that P3O's ratios sit inside the clip range
    x = [a.detach() + 0.01, b.detach() - 0.01] + [
        torch.rand(4, generator=g, dtype=D) for _ in range(4)
    ]
    assert torch.autograd.gradcheck(lambda u, v: ONLINE_CALLS[name](u, v, x), (a, b))
