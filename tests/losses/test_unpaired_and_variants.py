"""Unpaired losses (KTO, BCO, APO-zero) and TRL's DPO variants: worked numbers, limits, bad input."""

from __future__ import annotations

import math

import pytest
import torch

from prefkit import losses as L

D = torch.float64


def t(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=D)


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


# ------------------------------------------------------------------------------ unpaired


def test_kto_worked_numbers():
    # h = (1, -1); reference point z0 = mean(kl - ref_kl) = 0.5; beta = 2.
    logps, ref, labels = t(-1.0, -3.0), t(-2.0, -2.0), torch.tensor([True, False])
    out = L.kto(logps, ref, labels, kl_logps=t(-1.0, -2.0), ref_kl_logps=t(-1.5, -2.5), beta=2.0,
                desirable_weight=1.5, undesirable_weight=0.5)
    torch.testing.assert_close(out, t(1.5 * (1 - sigmoid(2 * (1 - 0.5))), 0.5 * (1 - sigmoid(2 * (0.5 + 1)))))


def test_kto_clamps_a_negative_reference_point_at_zero():
    logps, ref, labels = t(-1.0), t(-2.0), torch.tensor([True])
    out = L.kto(logps, ref, labels, kl=-3.0, beta=1.0)
    assert out.item() == pytest.approx(1 - sigmoid(1.0))


def test_kto_reference_point_carries_no_gradient():
    kl_logps = t(-1.0, -2.0).requires_grad_()
    logps = t(-1.0, -1.0).requires_grad_()
    L.kto(logps, t(-2.0, -2.0), torch.tensor([True, False]), kl_logps=kl_logps, ref_kl_logps=t(-3.0, -3.0)).sum().backward()
    assert kl_logps.grad is None and logps.grad is not None


def test_bco_and_apo_zero_unpaired_worked_numbers():
    logps, ref, labels = t(-1.0, -3.0), t(-2.0, -2.0), torch.tensor([True, False])  # h = (1, -1)
    torch.testing.assert_close(L.bco_unpaired(logps, ref, labels, beta=1.0), t(softplus(-1.0), softplus(-1.0)))
    torch.testing.assert_close(L.bco_unpaired(logps, ref, labels, beta=1.0, delta=0.5),
                               t(softplus(-0.5), softplus(-1.5)))
    torch.testing.assert_close(L.apo_zero_unpaired(logps, ref, labels, beta=1.0), t(1 - sigmoid(1.0), sigmoid(-1.0)))


def test_unpaired_equals_bco_pair_on_a_split_pair():
    """BCO on the two rows of a pair is the paired ``bco_pair`` loss, summed."""
    c, r, rc, rr = t(-1.0), t(-3.0), t(-1.5), t(-2.0)
    rows = L.bco_unpaired(torch.cat([c, r]), torch.cat([rc, rr]), torch.tensor([True, False]), beta=0.7)
    assert rows.sum().item() == pytest.approx(L.bco_pair(c, r, rc, rr, beta=0.7).item())


@pytest.mark.parametrize("name", ["kto", "bco_unpaired", "apo_zero_unpaired"])
def test_unpaired_gradcheck(name):
    g = torch.Generator().manual_seed(5)
    logps = (torch.randn(6, generator=g, dtype=D) - 2).requires_grad_()
    ref = torch.randn(6, generator=g, dtype=D) - 2
    labels = torch.tensor([True, False, True, True, False, False])
    extra = {"kl_logps": torch.randn(6, generator=g, dtype=D), "ref_kl_logps": torch.randn(6, generator=g, dtype=D)}
    spec = L.LOSSES[name]
    kwargs = {k: v for k, v in extra.items() if k in spec.inputs}
    assert torch.autograd.gradcheck(lambda x: spec.fn(x, ref, labels, beta=0.5, **kwargs), (logps,))


def test_unpaired_bad_input():
    logps, ref = t(-1.0, -2.0), t(-1.0, -2.0)
    labels = torch.tensor([True, False])
    with pytest.raises(ValueError, match="kl_logps and ref_kl_logps"):
        L.kto(logps, ref, labels)
    with pytest.raises(ValueError, match="not both"):
        L.kto(logps, ref, labels, kl=0.1, kl_logps=logps, ref_kl_logps=ref)
    with pytest.raises(ValueError, match="labels must be a bool"):
        L.apo_zero_unpaired(logps, ref, t(1.0, 0.0))
    with pytest.raises(ValueError, match="labels must be 0/1"):
        L.apo_zero_unpaired(logps, ref, torch.tensor([2, 0]))
    with pytest.raises(ValueError, match="shape"):
        L.bco_unpaired(logps, ref, torch.tensor([True]))
    with pytest.raises(ValueError, match="ref_logps is required"):
        L.bco_unpaired(logps, None, labels)
    with pytest.raises(ValueError, match="desirable_weight"):
        L.kto(logps, ref, labels, kl=0.0, desirable_weight=-1.0)
    with pytest.raises(ValueError, match="beta"):
        L.kto(logps, ref, labels, kl=0.0, beta=0.0)
    with pytest.raises(ValueError, match="logps must be finite"):
        L.apo_zero_unpaired(t(math.nan, 0.0), ref, labels)


# ------------------------------------------------------------------------- DPO variants


def test_fdpo_scores_worked_numbers():
    h = t(math.log(2.0))  # u = 2
    assert L.f_divergence_scores(h, "forward_kl").item() == pytest.approx(0.5)
    assert L.f_divergence_scores(h, "js_divergence").item() == pytest.approx(math.log(4 / 3))
    assert L.f_divergence_scores(h, "alpha_divergence", 0.5).item() == pytest.approx((2**-0.5 - 1) / -0.5)
    assert L.f_divergence_scores(h, "reverse_kl").item() == pytest.approx(math.log(2.0))


def test_ld_dpo_limits():
    c, r, rc, rr = t(-3.0), t(-6.0), t(-3.5), t(-5.0)
    tails = {"chosen_tail_logps": t(0.0), "rejected_tail_logps": t(-2.0), "ref_chosen_tail_logps": t(0.0),
             "ref_rejected_tail_logps": t(-1.0)}
    torch.testing.assert_close(L.ld_dpo(c, r, rc, rr, beta=0.3, ld_alpha=1.0, **tails), L.dpo(c, r, rc, rr, beta=0.3))
    # alpha = 0 drops the excess: rejected -6 - (-2) = -4, its reference -5 - (-1) = -4.
    torch.testing.assert_close(L.ld_dpo(c, r, rc, rr, beta=0.3, ld_alpha=0.0, **tails),
                               L.dpo(c, t(-4.0), rc, t(-4.0), beta=0.3))


def test_wpo_weights_are_the_pair_probabilities_and_detached():
    c, r, rc, rr = t(-1.0).requires_grad_(), t(-2.0), t(-1.5), t(-1.5)
    a_c = t(-0.5).requires_grad_()
    out = L.wpo(c, r, rc, rr, beta=1.0, chosen_wpo_logps=a_c, rejected_wpo_logps=t(-0.25))
    assert out.item() == pytest.approx(softplus(-1.0) * math.exp(-0.75))
    out.backward()
    assert a_c.grad is None and c.grad is not None


def test_variants_bad_input_names_the_argument():
    c, r, rc, rr = t(-1.0, -2.0), t(-2.0, -1.0), t(-1.5, -1.5), t(-1.5, -1.5)
    one = torch.ones(2, dtype=D)
    with pytest.raises(ValueError, match="f_divergence_type"):
        L.fdpo(c, r, rc, rr, f_divergence_type="kl")
    with pytest.raises(ValueError, match="chosen_tail_logps is required"):
        L.ld_dpo(c, r, rc, rr)
    with pytest.raises(ValueError, match="ld_alpha"):
        L.ld_dpo(c, r, rc, rr, ld_alpha=1.5, chosen_tail_logps=c, rejected_tail_logps=r, ref_chosen_tail_logps=rc,
                 ref_rejected_tail_logps=rr)
    with pytest.raises(ValueError, match="rejected_wpo_logps must have shape"):
        L.wpo(c, r, rc, rr, chosen_wpo_logps=c, rejected_wpo_logps=t(1.0))
    with pytest.raises(ValueError, match="gold_logps is required"):
        L.tpo(c, r, None, None)
    with pytest.raises(ValueError, match="gold_lengths"):
        L.tpo(c, r, None, None, gold_logps=c)
    with pytest.raises(ValueError, match="cpo_alpha"):
        L.cpo(c, r, chosen_lengths=one, rejected_lengths=one, cpo_alpha=-1.0)
    with pytest.raises(ValueError, match="alpha"):
        L.alphapo(c, r, chosen_lengths=one, rejected_lengths=one, alpha=math.inf)
    with pytest.raises(ValueError, match="ref_chosen_logps is required"):
        L.fdpo(c, r, None, None)


def test_spec_inputs_are_checked():
    with pytest.raises(ValueError, match="unknown inputs"):
        L.LossSpec("x", L.dpo, "pairwise", "arXiv 2305.18290", inputs=("tail",))
