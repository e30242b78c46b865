"""Online objectives: worked numbers, gradchecks, the mirror-descent equivalence, bad input."""

from __future__ import annotations

import math

import pytest
import torch

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
