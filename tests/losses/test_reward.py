"""Preference-model losses: Bradley-Terry options and the GPM skew-symmetric score."""

from __future__ import annotations

import math

import pytest
import torch

from prefkit import losses as L

D = torch.float64


def t(*values) -> torch.Tensor:
    return torch.tensor(values, dtype=D)


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def test_bradley_terry_worked_numbers():
    assert L.bradley_terry(t(2.0), t(1.0)).item() == pytest.approx(softplus(-1.0))
    # margin inside σ: −log σ(2 − 1 − 0.5)
    assert L.bradley_terry(t(2.0), t(1.0), margin=0.5).item() == pytest.approx(softplus(-0.5))
    assert L.bradley_terry(t(2.0), t(1.0), margin=t(0.5)).item() == pytest.approx(softplus(-0.5))
    # label smoothing α: (1−α)·(−log σ(1)) + α·(−log σ(−1))
    smoothed = L.bradley_terry(t(2.0), t(1.0), label_smoothing=0.1).item()
    assert smoothed == pytest.approx(0.9 * softplus(-1.0) + 0.1 * softplus(1.0))
    # adaptive margin from preference strength: m = 0.25 + 2 * 0.5 = 1.25 -> −log σ(−0.25)
    adaptive = L.bradley_terry(
        t(2.0), t(1.0), margin=0.25, preference_strength=t(0.5), strength_scale=2.0
    )
    assert adaptive.item() == pytest.approx(softplus(0.25))


def test_bradley_terry_swap_flips_label_and_gradcheck():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(6, generator=g, dtype=D), torch.randn(6, generator=g, dtype=D)
    torch.testing.assert_close(
        L.bradley_terry(b, a, label_smoothing=0.3), L.bradley_terry(a, b, label_smoothing=0.7)
    )
    a, b = a.requires_grad_(), b.requires_grad_()
    margin = torch.rand(6, generator=g, dtype=D)
    assert torch.autograd.gradcheck(
        lambda x, y: L.bradley_terry(x, y, margin=margin, label_smoothing=0.1), (a, b)
    )


def test_preference_strength_is_ensemble_mean_and_population_std():
    gaps = t([1.0, -1.0], [3.0, -1.0])
    mean, std = L.preference_strength(gaps)
    torch.testing.assert_close(mean, t(2.0, -1.0))
    torch.testing.assert_close(std, t(1.0, 0.0))


def test_gpm_score_worked_number_and_skew_symmetry():
    # k = 1: s = v_i[0] v_j[1] − v_i[1] v_j[0] = 1·4 − 2·3 = −2
    assert L.gpm_score(t(1.0, 2.0), t(3.0, 4.0)).item() == pytest.approx(-2.0)
    # k = 2 with eigenvalues (1, 0.5): −2 + 0.5 * (5·0 − 1·2) = −3
    score = L.gpm_score(t(1.0, 2.0, 5.0, 1.0), t(3.0, 4.0, 2.0, 0.0), eigenvalues=t(1.0, 0.5))
    assert score.item() == pytest.approx(-3.0)
    g = torch.Generator().manual_seed(1)
    v, w = torch.randn(5, 6, generator=g, dtype=D), torch.randn(5, 6, generator=g, dtype=D)
    torch.testing.assert_close(L.gpm_score(v, w), -L.gpm_score(w, v))
    torch.testing.assert_close(L.gpm_score(v, v), torch.zeros(5, dtype=D))


def test_gpm_represents_a_cycle_that_bradley_terry_cannot():
    """Three 2-d embeddings at 120° apart: a ≻ b ≻ c ≻ a all with the same positive score."""
    angles = torch.tensor([0.0, 2 * math.pi / 3, 4 * math.pi / 3], dtype=D)
    v = torch.stack([torch.cos(angles), torch.sin(angles)], -1)
    # s(i ≻ j) = sin(θ_j − θ_i): b is 120° after a, so s(a ≻ b) = sin(120°) > 0, etc.
    scores = L.gpm_score(v, v.roll(-1, 0))
    torch.testing.assert_close(scores, torch.full((3,), math.sin(2 * math.pi / 3), dtype=D))
    losses = L.gpm(v, v.roll(-1, 0), tau=0.1)
    assert bool((losses < 1e-3).all())


def test_gpm_loss_worked_number_and_gradcheck():
    # s = −2 (above), τ = 0.5, margin 1: −log σ((−2 − 1)/0.5) = softplus(6)
    loss = L.gpm(t([1.0, 2.0]), t([3.0, 4.0]), tau=0.5, margin=1.0)
    assert loss.item() == pytest.approx(softplus(6.0))
    g = torch.Generator().manual_seed(2)
    v = torch.randn(4, 4, generator=g, dtype=D, requires_grad=True)
    w = torch.randn(4, 4, generator=g, dtype=D, requires_grad=True)
    lam = torch.rand(4, 2, generator=g, dtype=D)
    assert torch.autograd.gradcheck(lambda a, b: L.gpm(a, b, tau=0.3, eigenvalues=lam), (v, w))


def test_reward_bad_input():
    with pytest.raises(ValueError, match="rejected_rewards"):
        L.bradley_terry(t(1.0, 2.0), t(1.0))
    with pytest.raises(ValueError, match="chosen_rewards must be finite"):
        L.bradley_terry(t(math.nan), t(1.0))
    with pytest.raises(ValueError, match="margin"):
        L.bradley_terry(t(1.0, 2.0), t(1.0, 0.0), margin=t(1.0, 2.0, 3.0))
    with pytest.raises(ValueError, match="label_smoothing"):
        L.bradley_terry(t(1.0), t(0.0), label_smoothing=2.0)
    with pytest.raises(ValueError, match="even"):
        L.gpm_score(t(1.0, 2.0, 3.0), t(1.0, 2.0, 3.0))
    with pytest.raises(ValueError, match="eigenvalues"):
        L.gpm_score(t(1.0, 2.0), t(1.0, 2.0), eigenvalues=t(1.0, 2.0))
    with pytest.raises(ValueError, match="tau"):
        L.gpm(t([1.0, 2.0]), t([3.0, 4.0]), tau=0.0)
    with pytest.raises(ValueError, match="rejected_embeddings"):
        L.gpm(t([1.0, 2.0]), t([3.0, 4.0, 1.0, 1.0]))
