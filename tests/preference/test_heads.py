"""Heads: hand-computed GPM scores, skew-symmetry, eigenvalue modes, normalisation."""

from __future__ import annotations

import math

import pytest
import torch

from prefkit.preference.heads import GPMHead, PairHead, RewardHead, build_head


def test_gpm_score_by_hand():
    head = GPMHead(4, dim=4, tau=0.5)
    v_a = torch.tensor([1.0, 2.0, 3.0, 4.0])
    v_b = torch.tensor([-1.0, 0.5, 2.0, -1.0])
    # blocks: a0*b1 - a1*b0 = 0.5 + 2 = 2.5 ; a2*b3 - a3*b2 = -3 - 8 = -11
    assert float(head.scores(v_a, v_b)) == pytest.approx(2.5 - 11.0)
    assert float(head.logits(v_a, v_b)) == pytest.approx((2.5 - 11.0) / 0.5)


def test_gpm_logits_are_skew_symmetric_in_every_mode():
    torch.manual_seed(0)
    for mode in ("ones", "learned", "prompt"):
        head = GPMHead(8, dim=6, eigenvalues=mode)
        if mode == "learned":
            head.eigenvalues.data = torch.tensor([0.5, 2.0, -1.0])
        h, x = torch.randn(5, 8), torch.randn(5, 8)
        e_a = head(h, x)
        e_b = head(torch.randn(5, 8), torch.randn(5, 8))  # other prompt vectors, too
        torch.testing.assert_close(head.logits(e_a, e_b), -head.logits(e_b, e_a))
        torch.testing.assert_close(head.logits(e_a, e_a), torch.zeros(5))


def test_prompt_eigenvalues_are_k_softmax():
    torch.manual_seed(0)
    head = GPMHead(8, dim=6, eigenvalues="prompt")
    x = torch.randn(2, 8)
    e = head(torch.randn(2, 8), x)
    assert e.shape == (2, 9)
    lam = e[:, 6:]
    torch.testing.assert_close(lam, 3 * torch.softmax(head.prompt_linear(x) / math.sqrt(8), dim=-1))
    torch.testing.assert_close(lam.sum(-1), torch.full((2,), 3.0))


def test_gpm_normalize_gives_unit_embeddings_and_bounded_scores():
    torch.manual_seed(0)
    head = GPMHead(8, dim=4, normalize=True, tau=1.0)
    e = head(torch.randn(10, 8) * 100)
    torch.testing.assert_close(e.norm(dim=-1), torch.ones(10))
    assert head.scores(e[:, None], e[None]).abs().max() <= 1.0 + 1e-5


def test_gpm_represents_a_three_cycle_that_no_reward_can():
    head = GPMHead(2, dim=2, tau=1.0)
    angles = torch.tensor([0.0, 2 * math.pi / 3, 4 * math.pi / 3])
    e = torch.stack([angles.cos(), angles.sin()], dim=1)
    m = torch.sigmoid(head.logits(e[:, None], e[None]))
    assert m[0, 1] > 0.5 and m[1, 2] > 0.5 and m[2, 0] > 0.5


def test_reward_head_logit_is_the_reward_difference():
    head = RewardHead(3)
    e_a, e_b = torch.tensor([[2.0]]), torch.tensor([[-0.5]])
    assert float(head.logits(e_a, e_b)) == 2.5
    assert head.linear.bias is None


def test_build_head_rejects_bad_settings():
    with pytest.raises(ValueError, match="even"):
        build_head("gpm", 8, dim=3)
    with pytest.raises(ValueError, match="tau"):
        build_head("gpm", 8, tau=0.0)
    with pytest.raises(ValueError, match="eigenvalues"):
        build_head("gpm", 8, eigenvalues="random")
    with pytest.raises(ValueError, match="unknown preference model kind"):
        build_head("dpo", 8)
    assert isinstance(build_head("pairpm", 8), PairHead)
    with pytest.raises(ValueError, match="embeddings have 4"):
        GPMHead(8, dim=4).scores(torch.zeros(6), torch.zeros(6))
