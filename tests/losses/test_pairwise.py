"""Pairwise losses: worked numbers, swaps, limits, gradchecks, TRL-parity formulas, bad input."""

from __future__ import annotations

import math

import pytest
import torch

from prefkit import losses as L
from prefkit.losses import LOSSES

D = torch.float64


def t(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=D)


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


# One pair with h_c = 0.5, h_r = -0.5, z = h_c - h_r = 1.
PAIR = (t(-1.0), t(-2.0), t(-1.5), t(-1.5))
PAIRWISE = sorted(name for name, spec in LOSSES.items() if spec.kind == "pairwise")


def extra_inputs(spec, c):
    """Neutral values for a spec's extra inputs (zero tails, unit WPO weights, a fixed gold)."""
    neutral = {"gold_logps": c.detach() * 0 - 2.0, "gold_lengths": torch.full_like(c, 4.0)}
    return {name: neutral.get(name, torch.zeros_like(c)) for name in spec.inputs}


def call(name: str, c, r, rc, rr, lengths=None, **kwargs):
    spec = LOSSES[name]
    if spec.needs_lengths:
        lc, lr = (
            lengths if lengths is not None else (torch.full_like(c, 4.0), torch.full_like(r, 4.0))
        )
        kwargs.update(chosen_lengths=lc, rejected_lengths=lr)
    if not spec.needs_reference:
        rc = rr = None
    return spec.fn(c, r, rc, rr, **extra_inputs(spec, c), **kwargs)


# ------------------------------------------------------------------------- worked numbers

WORKED = [
    # name, kwargs, expected (by hand for h_c = 0.5, h_r = -0.5, z = 1)
    ("dpo", {"beta": 1.0}, softplus(-1.0)),  # −log σ(1) = log(1 + e^−1)
    ("dpo", {"beta": 1.0, "label_smoothing": 0.2}, softplus(-1.0) + 0.2 * 1.0),
    ("dpo", {"beta": 2.0}, softplus(-2.0)),
    (
        "robust",
        {"beta": 1.0, "label_smoothing": 0.2},
        (0.8 * softplus(-1) - 0.2 * softplus(1)) / 0.6,
    ),
    ("ipo", {"beta": 1.0}, (1 - 0.5) ** 2),
    ("ipo", {"beta": 0.25}, (1 - 2) ** 2),
    ("hinge", {"beta": 0.5}, 0.5),
    ("hinge", {"beta": 2.0}, 0.0),
    (
        "exo_pair",
        {"beta": 1.0, "label_smoothing": 0.1},
        sigmoid(1) * (math.log(sigmoid(1)) - math.log(0.9))
        + sigmoid(-1) * (math.log(sigmoid(-1)) - math.log(0.1)),
    ),
    ("nca_pair", {"beta": 1.0}, softplus(-0.5) + 0.5 * softplus(0.5) + 0.5 * softplus(-0.5)),
    ("bco_pair", {"beta": 1.0}, 2 * softplus(-0.5)),
    ("bco_pair", {"beta": 1.0, "delta": 0.5}, math.log(2) + softplus(-1.0)),
    ("sppo_hard", {"beta": 1.0}, 0.0),
    ("sppo_hard", {"beta": 0.5}, (0.5 - 1) ** 2 + (-0.5 + 1) ** 2),
    ("apo_zero", {"beta": 1.0}, 1 - sigmoid(0.5) + sigmoid(-0.5)),
    ("apo_down", {"beta": 1.0}, sigmoid(0.5) + 1 - sigmoid(1.0)),
    (
        "discopop",
        {"beta": 1.0, "discopop_tau": 0.5},
        (1 - sigmoid(2.0)) * softplus(-1.0) + sigmoid(2.0) * math.exp(-1.0),
    ),
    ("aot", {"beta": 1.0}, softplus(-1.0)),  # one pair: sorting is the identity
    ("aot_unpaired", {"beta": 1.0}, softplus(-1.0)),
]


@pytest.mark.parametrize("name, kwargs, expected", WORKED, ids=[f"{w[0]}-{w[1]}" for w in WORKED])
def test_worked_numbers(name, kwargs, expected):
    loss = LOSSES[name].fn(*PAIR, **kwargs)
    assert loss.shape == (1,)
    assert loss.item() == pytest.approx(expected, rel=1e-12, abs=1e-12)


def test_length_normalised_worked_numbers():
    # dpo_norm: h_c = -4 - (-6) = 2 over 2 tokens -> 1; h_r = -9 - (-6) = -3 over 3 -> -1; gap 2.
    c, r, rc, rr, lc, lr = t(-4.0), t(-9.0), t(-6.0), t(-6.0), t(2.0), t(3.0)
    out = L.dpo_norm(c, r, rc, rr, chosen_lengths=lc, rejected_lengths=lr, beta=0.5)
    assert out.item() == pytest.approx(softplus(-1.0))
    # ipo per token (TRL form): (1 - (-1) - 1/(2*0.25))^2 = (2 - 2)^2 = 0; sequence sums: (5 - 2)^2.
    assert L.ipo_norm(c, r, rc, rr, chosen_lengths=lc, rejected_lengths=lr, beta=0.25).item() == 0.0
    assert L.ipo(c, r, rc, rr, beta=0.25).item() == pytest.approx(9.0)
    # simpo: chosen -4/2 = -2, rejected -9/3 = -3, gap 1; β = 2, γ = 1 -> −log σ(2 − 1).
    out = L.simpo(c, r, None, None, chosen_lengths=lc, rejected_lengths=lr, beta=2.0, gamma=1.0)
    assert out.item() == pytest.approx(softplus(-1.0))


def test_orpo_worked_numbers():
    # chosen: mean log-prob log 0.5 -> odds 1; rejected: log 0.25 -> odds 1/3; log-odds gap log 3.
    c, r = t(2 * math.log(0.5)), t(3 * math.log(0.25))
    lc, lr = t(2.0), t(3.0)
    odds_term = math.log(1 + 1 / 3)  # −log σ(log 3)
    out = L.orpo(c, r, None, None, chosen_lengths=lc, rejected_lengths=lr, beta=0.1)
    assert out.item() == pytest.approx(0.1 * odds_term + math.log(2))
    only_odds = L.orpo(c, r, None, None, chosen_lengths=lc, rejected_lengths=lr, include_nll=False)
    assert only_odds.item() == pytest.approx(0.1 * odds_term)


def test_aot_sorts_across_the_batch():
    # policy gaps (π_c − π_r) = (3, −1); reference gaps = (0, 2).
    c, r = t(1.0, -1.0), t(-2.0, 0.0)
    rc, rr = t(0.0, 1.0), t(0.0, -1.0)
    # sorted policy gaps (−1, 3) minus sorted reference gaps (0, 2) = (−1, 1).
    torch.testing.assert_close(L.aot(c, r, rc, rr, beta=1.0), t(softplus(1.0), softplus(-1.0)))
    # unpaired: h_c = (1, −2), h_r = (−2, 1); sorted: (−2, 1) − (−2, 1) = (0, 0).
    torch.testing.assert_close(L.aot_unpaired(c, r, rc, rr, beta=1.0), t(math.log(2), math.log(2)))


# ----------------------------------------------------------------- swaps, limits, equivalences


def test_swapping_chosen_and_rejected_flips_the_soft_label():
    g = torch.Generator().manual_seed(0)
    c, r, rc, rr = (torch.randn(7, generator=g, dtype=D) for _ in range(4))
    torch.testing.assert_close(
        L.dpo(r, c, rr, rc, beta=0.3, label_smoothing=0.2),
        L.dpo(c, r, rc, rr, beta=0.3, label_smoothing=0.8),
    )
    torch.testing.assert_close(
        L.exo_pair(r, c, rr, rc, beta=0.3, label_smoothing=0.2),
        L.exo_pair(c, r, rc, rr, beta=0.3, label_smoothing=0.8),
    )
    z = (c - rc) - (r - rr)
    torch.testing.assert_close(L.ipo(r, c, rr, rc, beta=0.5), (z + 1.0) ** 2)


@pytest.mark.parametrize("name", PAIRWISE)
def test_the_correct_order_has_lower_loss_than_the_swapped_one(name):
    # chosen more likely than rejected under the policy, equal under the reference, equal lengths.
    c, r, ref = t(-10.0, -20.0), t(-14.0, -23.0), t(-12.0, -21.5)
    correct = call(name, c, r, ref, ref)
    swapped = call(name, r, c, ref, ref)
    assert bool((correct < swapped).all()), (correct, swapped)


def test_beta_to_zero_and_label_smoothing_to_zero_limits():
    g = torch.Generator().manual_seed(1)
    c, r, rc, rr = (torch.randn(5, generator=g, dtype=D) for _ in range(4))
    # β -> 0: every pair looks like a coin flip, −log σ(0) = log 2; hinge -> 1; apo_zero -> 1.
    torch.testing.assert_close(
        L.dpo(c, r, rc, rr, beta=1e-9), torch.full((5,), math.log(2), dtype=D)
    )
    torch.testing.assert_close(L.hinge(c, r, rc, rr, beta=1e-9), torch.ones(5, dtype=D))
    torch.testing.assert_close(L.apo_zero(c, r, rc, rr, beta=1e-9), torch.ones(5, dtype=D))
    # ε -> 0: cDPO and rDPO become DPO.
    base = L.dpo(c, r, rc, rr, beta=0.7)
    torch.testing.assert_close(L.dpo(c, r, rc, rr, beta=0.7, label_smoothing=1e-12), base)
    torch.testing.assert_close(L.robust(c, r, rc, rr, beta=0.7, label_smoothing=1e-12), base)
    torch.testing.assert_close(L.robust(c, r, rc, rr, beta=0.7, label_smoothing=0.0), base)
    # β -> ∞ for IPO: (z − 1/(2β))² -> z².
    z = (c - rc) - (r - rr)
    torch.testing.assert_close(L.ipo(c, r, rc, rr, beta=1e12), z**2)


def test_robust_is_unbiased_under_label_flips():
    """rDPO's defining property: E over flips (rate ε) of the robust loss = clean DPO loss."""
    g = torch.Generator().manual_seed(2)
    c, r, rc, rr = (torch.randn(6, generator=g, dtype=D) for _ in range(4))
    eps = 0.3
    expected = (1 - eps) * L.robust(c, r, rc, rr, beta=0.5, label_smoothing=eps) + eps * L.robust(
        r, c, rr, rc, beta=0.5, label_smoothing=eps
    )
    torch.testing.assert_close(expected, L.dpo(c, r, rc, rr, beta=0.5))


def test_ipo_with_lengths_equals_ipo_norm_and_normalises_per_token():
    c, r, rc, rr = t(-6.0), t(-8.0), t(-7.0), t(-7.0)
    lc, lr = t(2.0), t(4.0)
    a = L.ipo(c, r, rc, rr, beta=0.5, chosen_lengths=lc, rejected_lengths=lr)
    b = L.ipo_norm(c, r, rc, rr, beta=0.5, chosen_lengths=lc, rejected_lengths=lr)
    # h_c/2 − h_r/4 = 0.5 + 0.25 = 0.75; (0.75 − 1)^2
    torch.testing.assert_close(a, t(0.0625))
    torch.testing.assert_close(a, b)


def test_dpo_norm_equals_dpo_on_per_token_log_probs():
    g = torch.Generator().manual_seed(3)
    c, r, rc, rr = (torch.randn(5, generator=g, dtype=D) * 5 for _ in range(4))
    lc, lr = t(1, 2, 3, 4, 5), t(5, 4, 3, 2, 1)
    torch.testing.assert_close(
        L.dpo_norm(c, r, rc, rr, chosen_lengths=lc, rejected_lengths=lr, beta=3.0),
        L.dpo(c / lc, r / lr, rc / lc, rr / lr, beta=3.0),
    )


def test_per_pair_label_smoothing_tensor():
    eps = t(0.0, 0.25)
    c, r, rc, rr = t(-1.0, -1.0), t(-2.0, -2.0), t(-1.5, -1.5), t(-1.5, -1.5)
    out = L.dpo(c, r, rc, rr, beta=1.0, label_smoothing=eps)
    torch.testing.assert_close(out, t(softplus(-1.0), softplus(-1.0) + 0.25))


# -------------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("name", PAIRWISE)
def test_gradcheck(name):
    g = torch.Generator().manual_seed(4)
    c = (torch.randn(5, generator=g, dtype=D) - 3).requires_grad_()
    r = (torch.randn(5, generator=g, dtype=D) - 3).requires_grad_()
    rc, rr = torch.randn(5, generator=g, dtype=D) - 3, torch.randn(5, generator=g, dtype=D) - 3
    lengths = (t(1, 2, 3, 4, 5), t(2, 2, 2, 2, 2))
    assert torch.autograd.gradcheck(lambda a, b: call(name, a, b, rc, rr, lengths=lengths), (c, r))


def test_dpo_gradient_matches_the_paper():
    """∇_{π_c} of DPO = −β σ(−β z) (Rafailov et al. eq. 7 gradient)."""
    c = t(-1.0).requires_grad_()
    L.dpo(c, t(-2.0), t(-1.5), t(-1.5), beta=0.5).sum().backward()
    assert c.grad.item() == pytest.approx(-0.5 * sigmoid(-0.5))


# -------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("name", PAIRWISE)
def test_bad_input_names_the_argument(name):
    good = t(-1.0, -2.0)
    with pytest.raises(ValueError, match="rejected_logps"):
        call(name, good, t(-1.0), good, good)
    with pytest.raises(ValueError, match="beta"):
        call(name, good, good, good, good, beta=0.0)
    with pytest.raises(ValueError, match="beta"):
        call(name, good, good, good, good, beta=-1.0)
    with pytest.raises(ValueError, match="chosen_logps must be finite"):
        call(name, t(math.nan, 0.0), good, good, good)
    with pytest.raises(ValueError, match=r"shape \[B\]"):
        call(name, good[None], good[None], good[None], good[None])


def test_bad_hyper_parameters():
    with pytest.raises(ValueError, match="label_smoothing"):
        L.robust(*PAIR, label_smoothing=0.5)
    with pytest.raises(ValueError, match="label_smoothing"):
        L.exo_pair(*PAIR, label_smoothing=0.0)
    with pytest.raises(ValueError, match="label_smoothing"):
        L.dpo(*PAIR, label_smoothing=1.5)
    with pytest.raises(ValueError, match="discopop_tau"):
        L.discopop(*PAIR, discopop_tau=0.0)
    with pytest.raises(ValueError, match="ref_chosen_logps is required"):
        L.dpo(t(-1.0), t(-2.0), None, t(-1.0))
    with pytest.raises(ValueError, match="chosen_lengths"):
        L.simpo(t(-1.0), t(-2.0), chosen_lengths=t(0.0), rejected_lengths=t(1.0))
    with pytest.raises(ValueError, match=r"rejected_logps must lie in \[-inf, 0"):
        L.orpo(t(-1.0), t(0.5), chosen_lengths=t(1.0), rejected_lengths=t(1.0))
    with pytest.raises(ValueError, match="rejected_lengths"):
        L.dpo_norm(*PAIR, chosen_lengths=t(1.0), rejected_lengths=t(1.0, 2.0))


def test_discopop_at_the_reference_pushes_toward_the_rejected_response():
    """A property of the published loss (Lu et al. 2024, eq. 5, tau = 0.05), not a bug: near
    z = 0 the modulation term dominates, the loss rises with z up to z ~ 0.7/beta and has a
    local minimum at z ~ -1/beta, so training that starts at the reference first learns the
    reverse preference (measured in benchmarks/RESULTS.md, demo section)."""
    z = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    zero = torch.zeros(1, dtype=torch.float64)
    L.discopop(z, zero, zero, zero, beta=0.1).sum().backward()
    assert z.grad.item() > 0  # gradient descent lowers z: chosen loses ground to rejected
    values = [float(L.discopop(torch.tensor([v], dtype=torch.float64), zero, zero, zero, beta=0.1)) for v in (-1.0, 0.0, 0.7)]
    assert values[0] < values[1] < values[2]
