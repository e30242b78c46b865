"""Weighted loss combinations plus NLL (RPO / MPO)."""

from __future__ import annotations

import functools

import pytest
import torch

from prefkit import losses as L

D = torch.float64


def batch(seed: int = 0, b: int = 5):
    g = torch.Generator().manual_seed(seed)
    c, r, rc, rr = (torch.randn(b, generator=g, dtype=D) * 3 - 10 for _ in range(4))
    lc = torch.randint(1, 9, (b,), generator=g).to(D)
    lr = torch.randint(1, 9, (b,), generator=g).to(D)
    return c, r, rc, rr, lc, lr


def test_single_component_is_the_loss_itself():
    c, r, rc, rr, _, _ = batch()
    torch.testing.assert_close(
        L.combine(c, r, rc, rr, weights={"dpo": 1.0}, beta=0.3, dpo={"label_smoothing": 0.1}),
        L.dpo(c, r, rc, rr, beta=0.3, label_smoothing=0.1),
    )


def test_mpo_style_weighted_sum_with_nll():
    c, r, rc, rr, lc, lr = batch(1)
    out = L.combine(
        c,
        r,
        rc,
        rr,
        weights={"dpo": 0.8, "bco_pair": 0.2, "simpo": 0.5},
        beta=0.2,
        nll_weight=1.0,
        chosen_lengths=lc,
        rejected_lengths=lr,
        simpo={"beta": 2.0, "gamma": 0.5},
    )
    expected = (
        0.8 * L.dpo(c, r, rc, rr, beta=0.2)
        + 0.2 * L.bco_pair(c, r, rc, rr, beta=0.2)
        + 0.5 * L.simpo(c, r, chosen_lengths=lc, rejected_lengths=lr, beta=2.0, gamma=0.5)
        + 1.0 * (-c / lc)
    )
    torch.testing.assert_close(out, expected)


def test_beta_none_keeps_each_default_and_nll_alone_is_per_token_nll():
    c, r, rc, rr, lc, _ = batch(2)
    out = L.combine(c, r, rc, rr, weights={"ipo": 1.0})
    torch.testing.assert_close(out, L.ipo(c, r, rc, rr))
    nll = L.combine(c, r, None, None, weights={}, nll_weight=0.5, chosen_lengths=lc)
    torch.testing.assert_close(nll, 0.5 * -c / lc)


def test_combined_spec_unions_needs_and_calls_like_a_pairwise_loss():
    spec = L.combined_spec({"dpo": 1.0}, nll_weight=0.1)
    assert spec.kind == "pairwise" and spec.needs_reference and spec.needs_lengths
    assert spec.name == "1*dpo+0.1*nll"
    free = L.combined_spec({"simpo": 1.0, "orpo": 0.5})
    assert not free.needs_reference and free.needs_lengths
    plain = L.combined_spec({"dpo": 0.5, "ipo": 0.5})
    assert plain.needs_reference and not plain.needs_lengths
    c, r, rc, rr, lc, lr = batch(3)
    out = spec.fn(c, r, rc, rr, beta=0.1, chosen_lengths=lc, rejected_lengths=lr)
    torch.testing.assert_close(out, L.dpo(c, r, rc, rr, beta=0.1) + 0.1 * (-c / lc))
    assert isinstance(spec.fn, functools.partial)


def test_gradcheck():
    c, r, rc, rr, lc, _ = batch(4)
    c, r = c.requires_grad_(), r.requires_grad_()
    assert torch.autograd.gradcheck(
        lambda a, b: L.combine(
            a, b, rc, rr, weights={"dpo": 0.5, "ipo": 0.5}, nll_weight=0.2, chosen_lengths=lc
        ),
        (c, r),
    )


def test_bad_input():
    c, r, rc, rr, _, _ = batch(5)
    with pytest.raises(ValueError, match="unknown loss 'dpoo'"):
        L.combine(c, r, rc, rr, weights={"dpoo": 1.0})
    with pytest.raises(ValueError, match="only pairwise"):
        L.combine(c, r, rc, rr, weights={"lipo_lambda": 1.0})
    with pytest.raises(ValueError, match="nothing to optimise"):
        L.combine(c, r, rc, rr, weights={})
    with pytest.raises(ValueError, match="params for"):
        L.combine(c, r, rc, rr, weights={"dpo": 1.0}, ipo={"beta": 0.1})
    with pytest.raises(ValueError, match="chosen_lengths"):
        L.combine(c, r, rc, rr, weights={"dpo": 1.0}, nll_weight=1.0)
    with pytest.raises(ValueError, match="nll_weight"):
        L.combined_spec({"dpo": 1.0}, nll_weight=-1.0)
    with pytest.raises(ValueError, match="weights"):
        L.combine(c, r, rc, rr, weights={"dpo": float("nan")})
