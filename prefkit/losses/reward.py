"""Preference-model losses: Bradley-Terry on scalar rewards and GPM on skew-symmetric embeddings.

These train reward / preference models, not policies: inputs are model outputs (rewards
``[B]`` or embeddings ``[B, 2k]``) that carry gradients; margins and preference strengths are
detached data.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from prefkit.losses import _checks

Tensor = torch.Tensor


def _margin(name: str, value: float | Tensor | None, shape: tuple[int, ...]) -> float | Tensor:
    if value is None:
        return 0.0
    if isinstance(value, torch.Tensor):
        if value.numel() != 1 and tuple(value.shape) != shape:
            raise ValueError(
                f"{name} must be a number, a scalar tensor or shape {shape}, got {tuple(value.shape)}"
            )
        _checks.finite(**{name: value})
        return value.detach()
    if not (isinstance(value, int | float) and math.isfinite(value)):
        raise ValueError(f"{name} must be a finite number or a tensor, got {value!r}")
    return float(value)


def bradley_terry(
    chosen_rewards: Tensor,
    rejected_rewards: Tensor,
    *,
    margin: float | Tensor | None = None,
    label_smoothing: float | Tensor = 0.0,
    preference_strength: Tensor | None = None,
    strength_scale: float = 1.0,
    center_rewards_coefficient: float | None = None,
) -> Tensor:
    """Bradley-Terry reward-model loss with optional margin, label smoothing, adaptive margin
    and reward centring.

    Papers: Bradley & Terry 1952; Ouyang et al. 2022 (InstructGPT), arXiv 2203.02155, eq. 1;
    margin: Touvron et al. 2023 (Llama 2), arXiv 2307.09288, eq. 2; label smoothing and adaptive
    margin from ensemble preference strength: Wang et al. 2024, "Secrets of RLHF in Large
    Language Models Part II: Reward Modeling", arXiv 2401.06080, §3 (algorithms.md §14).

    With ``d = r_c − r_r − m`` and ``m = margin + strength_scale · preference_strength``:
    ``loss = −(1−α) log σ(d) − α log σ(−d)``.

    Deviation note: Secrets-II prints the adaptive margin outside the log-sigmoid; that is a
    typo (it would not change the gradient), so the margin goes inside σ here, the standard form.

    Reward centring (Eisenstein et al. 2023, "Helping or Herding? Reward Model Ensembles
    Mitigate but do not Eliminate Reward Hacking", arXiv 2312.09244, §3): with
    ``center_rewards_coefficient = c`` the loss adds ``c (r_c + r_r)²``, which pulls the
    rewards' mean to zero (TRL 1.16 ``RewardTrainer`` adds ``c · mean((r_c + r_r)²)`` to the
    batch mean; the same batch mean here).

    Args:
        chosen_rewards, rejected_rewards: ``[B]`` scalar rewards (with gradients).
        margin: number or ``[B]`` data margin (TRL's ``margin`` column), detached.
        label_smoothing: α in [0, 1] or ``[B]``.
        preference_strength: optional ``[B]`` ensemble mean reward gap μ̂ (see
            :func:`preference_strength`), detached; adds the adaptive margin.
        strength_scale: multiplies ``preference_strength``.
        center_rewards_coefficient: ``c >= 0`` (TRL's name), or ``None`` for no centring term.
    """
    shape = _checks.same_shape(1, chosen_rewards=chosen_rewards, rejected_rewards=rejected_rewards)
    _checks.finite(chosen_rewards=chosen_rewards, rejected_rewards=rejected_rewards)
    total_margin = _margin("margin", margin, shape)
    if preference_strength is not None:
        strength = _margin("preference_strength", preference_strength, shape)
        if not (isinstance(strength_scale, int | float) and math.isfinite(strength_scale)):
            raise ValueError(f"strength_scale must be a finite number, got {strength_scale!r}")
        total_margin = total_margin + strength_scale * strength
    if isinstance(label_smoothing, torch.Tensor):
        if tuple(label_smoothing.shape) != shape:
            raise ValueError(f"label_smoothing must be a number or shape {shape}")
        _checks.values_in("label_smoothing", label_smoothing, 0.0, 1.0)
        label_smoothing = label_smoothing.detach()
    else:
        _checks.in_range("label_smoothing", label_smoothing, 0.0, 1.0)
    d = chosen_rewards - rejected_rewards - total_margin
    loss = -F.logsigmoid(d)
    if isinstance(label_smoothing, torch.Tensor) or label_smoothing != 0:
        loss = (1 - label_smoothing) * loss - label_smoothing * F.logsigmoid(-d)
    if center_rewards_coefficient is not None:
        _checks.non_negative("center_rewards_coefficient", center_rewards_coefficient)
        loss = loss + center_rewards_coefficient * (chosen_rewards + rejected_rewards) ** 2
    return loss


def preference_strength(reward_gaps: Tensor) -> tuple[Tensor, Tensor]:
    """Ensemble preference strength: mean and std of ``r_m(y_c) − r_m(y_r)`` over M models.

    Paper: Wang et al. 2024, arXiv 2401.06080, §3.1 (μ̂_i and σ̂_i, population std).

    Args:
        reward_gaps: ``[M, B]`` reward differences, one row per reward model.

    Returns:
        ``(mean [B], std [B])``, both detached. Pass ``mean`` as ``preference_strength`` to
        :func:`bradley_terry`; low or negative means flag likely mislabelled pairs.
    """
    _checks.same_shape(2, reward_gaps=reward_gaps)
    _checks.finite(reward_gaps=reward_gaps)
    gaps = reward_gaps.detach()
    return gaps.mean(dim=0), gaps.std(dim=0, unbiased=False)


def gpm_score(v_i: Tensor, v_j: Tensor, *, eigenvalues: Tensor | None = None) -> Tensor:
    """Skew-symmetric preference score ``s(y_i ≻ y_j) = ⟨R^≻ v_i, v_j⟩`` of the GPM.

    Paper: Zhang et al. 2024, "Beyond Bradley-Terry Models: A General Preference Model for
    Language Model Alignment", arXiv 2410.02197, eq. for the preference score (algorithms.md
    §5.1; official code ``general_preference/models/loss.py``).

    ``R^≻ = diag(λ_1 J, ..., λ_k J)`` with ``J = [[0, −1], [1, 0]]``, so
    ``s = Σ_l λ_l (v_i[2l] v_j[2l+1] − v_i[2l+1] v_j[2l])``; ``s(i, j) = −s(j, i)``,
    ``s(i, i) = 0``. Costs O(k) per pair; K responses need K embeddings, not K² model calls.

    Args:
        v_i, v_j: ``[..., 2k]`` embeddings (same shape, even last dimension).
        eigenvalues: optional ``[k]`` or ``[..., k]`` (e.g. prompt-dependent) block scales λ;
            default all ones.

    Returns:
        ``[...]`` scores.
    """
    _checks.tensor("v_i", v_i)
    _checks.tensor("v_j", v_j)
    if v_i.shape != v_j.shape:
        raise ValueError(
            f"v_j must have the shape of v_i {tuple(v_i.shape)}, got {tuple(v_j.shape)}"
        )
    if v_i.ndim < 1 or v_i.shape[-1] % 2 != 0 or v_i.shape[-1] == 0:
        raise ValueError(
            f"embeddings must have an even, non-zero last dimension 2k, got {tuple(v_i.shape)}"
        )
    a, b = v_i.unflatten(-1, (-1, 2)), v_j.unflatten(-1, (-1, 2))
    blocks = a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]  # [..., k]
    if eigenvalues is not None:
        _checks.tensor("eigenvalues", eigenvalues)
        k = blocks.shape[-1]
        if eigenvalues.shape[-1] != k:
            raise ValueError(
                f"eigenvalues must have last dimension k = {k}, got {tuple(eigenvalues.shape)}"
            )
        try:
            torch.broadcast_shapes(eigenvalues.shape, blocks.shape)
        except RuntimeError as error:
            raise ValueError(
                f"eigenvalues of shape {tuple(eigenvalues.shape)} do not broadcast to {tuple(blocks.shape)}"
            ) from error
        blocks = blocks * eigenvalues
    return blocks.sum(dim=-1)


def gpm(
    chosen_embeddings: Tensor,
    rejected_embeddings: Tensor,
    *,
    tau: float = 0.1,
    eigenvalues: Tensor | None = None,
    margin: float | Tensor | None = None,
) -> Tensor:
    """General Preference Model loss: logistic loss on the skew-symmetric score.

    Paper: Zhang et al. 2024, arXiv 2410.02197 (GPM), the loss ``−log σ(s(y_w ≻ y_l)/τ)``
    (official code ``HighDimGeneralPreferenceLoss``; margin option ``σ((s − m)/τ)``).

    ``loss = −log σ((s(y_c ≻ y_r) − m) / τ)`` with ``s`` from :func:`gpm_score`.
    Default τ = 0.1 (the code's ``general_preference_tau``). ``P(y_i ≻ y_j) = σ(s/τ)`` may be
    non-transitive (it can represent cycles), unlike Bradley-Terry.

    Args:
        chosen_embeddings, rejected_embeddings: ``[B, 2k]`` response embeddings (with gradients).
        tau: temperature τ > 0.
        eigenvalues: optional ``[k]`` or ``[B, k]`` block scales (see :func:`gpm_score`).
        margin: optional number or ``[B]`` margin, detached.
    """
    shape = _checks.same_shape(
        2, chosen_embeddings=chosen_embeddings, rejected_embeddings=rejected_embeddings
    )
    _checks.positive("tau", tau)
    _checks.finite(chosen_embeddings=chosen_embeddings, rejected_embeddings=rejected_embeddings)
    m = _margin("margin", margin, shape[:1])
    score = gpm_score(chosen_embeddings, rejected_embeddings, eigenvalues=eigenvalues)
    return -F.logsigmoid((score - m) / tau)
