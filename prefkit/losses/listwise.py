"""Listwise preference losses over ``K`` responses per prompt.

Convention: ``logps, ref_logps`` are ``[B, K]`` sequence log-prob sums; ``labels`` are ``[B, K]``
per-response scores (higher is better) or, for ADPO, a target distribution. ``mask[B, K]``
(bool, ``True`` = a real response) lets lists of different lengths share one batch; masked
slots may hold any value (even non-finite) and never influence the loss or its gradient.
Each row needs at least two real responses. All functions are vectorised over the batch and
over list positions (no Python loop over examples or positions).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from prefkit.losses import _checks

Tensor = torch.Tensor


def _list_inputs(
    logps: Tensor,
    ref_logps: Tensor | None,
    labels: Tensor,
    mask: Tensor | None,
    *,
    labels_name: str = "labels",
) -> tuple[int, int]:
    shape = _checks.same_shape(2, logps=logps, ref_logps=ref_logps, **{labels_name: labels})
    _checks.mask_shape(mask, shape)
    _checks.rows_not_empty(mask, minimum=2)
    if shape[1] < 2:
        raise ValueError(f"lists need at least 2 responses (K >= 2), got K = {shape[1]}")
    _checks.finite_where(mask, logps=logps, ref_logps=ref_logps, **{labels_name: labels})
    return shape


def _safe(values: Tensor, mask: Tensor | None, fill: float = 0.0) -> Tensor:
    """``values`` with masked slots replaced by ``fill`` (so NaN padding cannot leak into grads)."""
    if mask is None:
        return values
    return values.masked_fill(~mask, fill)


def lipo_lambda(
    logps: Tensor,
    ref_logps: Tensor,
    labels: Tensor,
    *,
    beta: float = 0.05,
    mask: Tensor | None = None,
) -> Tensor:
    """LiPO-λ: LambdaLoss-weighted pairwise logistic loss over a list.

    Paper: Liu et al. 2024, "LiPO: Listwise Preference Optimization through Learning-to-Rank",
    arXiv 2402.01878, eq. for LiPO-λ (section 4; LambdaLoss of Wang et al. 2018).

    With ``s_i = β (logps_i − ref_logps_i)`` and labels ψ:
    ``loss = Σ_{ψ_i > ψ_j} Δ_ij · log(1 + e^{−(s_i − s_j)})``,
    ``Δ_ij = |G_i − G_j| · |1/D(τ_i) − 1/D(τ_j)|``, ``G = 2^ψ − 1``, ``D(τ) = log2(1 + τ)``,
    where ``τ_i`` is the 1-based rank of response i under the **current model scores s**
    (recomputed at every call, treated as constant: the weights carry no gradient).
    Pairs with equal labels contribute nothing. Returns the per-list sum ``[B]`` (no
    normalisation by the number of pairs, as in the paper's formula).

    Notes: uses reciprocal discounts ``1/D`` as in DCG (algorithms.md §6 explains why the
    extracted paper text is ambiguous); ties in s are ranked by position. For K = 2 with labels
    (1, 0) the weight is ``1 − 1/log2(3) ≈ 0.369`` and the loss is that weight times DPO.

    Args:
        logps, ref_logps: ``[B, K]`` policy / reference sequence log-prob sums.
        labels: ``[B, K]`` real-valued labels ψ (higher is better; the paper uses ψ ∈ [0, 1]).
        beta: β > 0 (paper default 0.05).
        mask: optional ``[B, K]`` bool, ``True`` for real responses.
    """
    _list_inputs(logps, ref_logps, labels, mask)
    _checks.positive("beta", beta)
    scores = beta * (_safe(logps, mask) - _safe(ref_logps, mask))
    labels = _safe(labels.detach(), mask)
    with torch.no_grad():
        ranking_scores = scores.detach()
        if mask is not None:
            ranking_scores = ranking_scores.masked_fill(~mask, float("-inf"))
        order = torch.argsort(ranking_scores, dim=-1, descending=True, stable=True)
        ranks = torch.empty_like(order)
        positions = torch.arange(1, order.shape[-1] + 1, device=order.device).expand_as(order)
        ranks.scatter_(-1, order, positions)
        inverse_discount = 1.0 / torch.log2(1.0 + ranks.to(scores.dtype))
        gains = torch.exp2(labels) - 1.0
        weights = (gains[:, :, None] - gains[:, None, :]).abs() * (
            inverse_discount[:, :, None] - inverse_discount[:, None, :]
        ).abs()
        better = labels[:, :, None] > labels[:, None, :]
        if mask is not None:
            better = better & mask[:, :, None] & mask[:, None, :]
        weights = weights * better
    pair_loss = F.softplus(-(scores[:, :, None] - scores[:, None, :]))
    return (weights * pair_loss).sum(dim=(-2, -1))


def dpo_pl(
    logps: Tensor,
    ref_logps: Tensor,
    labels: Tensor,
    *,
    beta: float = 0.1,
    mask: Tensor | None = None,
) -> Tensor:
    """DPO with the Plackett-Luce model (listwise maximum likelihood of the label ranking).

    Paper: Rafailov et al. 2023, arXiv 2305.18290, Appendix A.3 (Plackett-Luce); the
    DPO-PL baseline of LiPO (arXiv 2402.01878).

    With ``s = β (logps − ref_logps)`` and ``σ`` the ranking by ``labels`` (descending):
    ``loss = −Σ_{k=1}^{K} [ s_{σ(k)} − log Σ_{j ≥ k} exp(s_{σ(j)}) ]``.
    Equal labels are ordered by list position (stable sort). For K = 2 this is exactly DPO.
    """
    _list_inputs(logps, ref_logps, labels, mask)
    _checks.positive("beta", beta)
    scores = beta * (_safe(logps, mask) - _safe(ref_logps, mask))
    sort_key = _safe(labels.detach(), mask)
    very_low = torch.finfo(scores.dtype).min / 4
    if mask is not None:
        sort_key = sort_key.masked_fill(~mask, float("-inf"))
        scores = scores.masked_fill(~mask, very_low)
    order = torch.argsort(sort_key, dim=-1, descending=True, stable=True)
    ordered = scores.gather(-1, order)
    suffix_lse = torch.logcumsumexp(ordered.flip(-1), dim=-1).flip(-1)
    terms = ordered - suffix_lse
    if mask is not None:
        terms = terms.masked_fill(~mask.gather(-1, order), 0.0)
    return -terms.sum(dim=-1)


def adpo(
    logps: Tensor,
    ref_logps: Tensor,
    target: Tensor,
    *,
    tau: float = 1.0,
    mask: Tensor | None = None,
) -> Tensor:
    """ADPO: anchored soft-target cross-entropy over a candidate set (pairwise or listwise).

    Paper: Wang 2025, "ADPO: Anchored Direct Preference Optimization", arXiv 2510.18913,
    anchored listwise objective (algorithms.md §7.1).

    ``p_i = softmax_i((logps_i − ref_logps_i) / τ)`` (the reference is the anchor) and
    ``loss = −Σ_i q_i log p_i``, the cross-entropy to the target distribution ``q``. This equals
    the paper's ``KL(q ‖ p)`` plus the entropy of q, which does not depend on the model (same
    gradient); it is exact DPO for a hard pairwise target with ``τ = 1/β``, and cDPO for the
    target ``(1−ε, ε)``.

    Targets: :func:`adpo_pairwise_target` (soft pairwise label) and
    :func:`adpo_targets_from_rewards` (``softmax(R/β_r)``, optionally group-normalised).

    Args:
        logps, ref_logps: ``[B, K]`` sequence log-prob sums (policy, anchor).
        target: ``[B, K]`` distribution q (non-negative, rows sum to 1 over the unmasked entries).
        tau: temperature τ > 0.
        mask: optional ``[B, K]`` bool, ``True`` for real candidates.
    """
    _list_inputs(logps, ref_logps, target, mask, labels_name="target")
    _checks.positive("tau", tau)
    tolerance = max(1e-4, target.shape[-1] * torch.finfo(target.dtype).eps)
    _checks.distribution_rows("target", target, mask, atol=tolerance)
    logits = (_safe(logps, mask) - _safe(ref_logps, mask)) / tau
    if mask is not None:
        logits = logits.masked_fill(~mask, float("-inf"))
    log_p = torch.log_softmax(logits, dim=-1)
    q = _safe(target.detach(), mask)
    return -(q * _safe(log_p, mask)).sum(dim=-1)


def adpo_pairwise_target(label: Tensor) -> Tensor:
    """ADPO pairwise target ``q = (P(chosen ≻ rejected), 1 − P)`` as ``[B, 2]``.

    Stack the log-probs the same way: ``logps = torch.stack([chosen, rejected], dim=-1)``.
    Paper: Wang 2025, arXiv 2510.18913 (pairwise anchored soft-DPO).
    """
    _checks.same_shape(1, label=label)
    _checks.values_in("label", label, 0.0, 1.0)
    label = label.detach()
    return torch.stack([label, 1 - label], dim=-1)


def adpo_targets_from_rewards(
    scores: Tensor,
    mask: Tensor | None = None,
    *,
    beta_r: float = 0.5,
    group_normalize: bool = True,
) -> Tensor:
    """ADPO listwise target ``q = softmax(R / β_r)`` over each list (masked slots get 0).

    Paper: Wang 2025, arXiv 2510.18913 (listwise anchored soft-DPO with rewards). With
    ``group_normalize`` the rewards are standardised within each list first,
    ``(R − mean) / (std + 1e-8)`` (population std over the real entries), as in the VERL ADPO
    integration whose default is β_r = 0.5.

    Args:
        scores: ``[B, K]`` rewards (higher is better).
        mask: optional ``[B, K]`` bool.
    """
    shape = _checks.same_shape(2, scores=scores)
    _checks.mask_shape(mask, shape)
    _checks.rows_not_empty(mask, minimum=1)
    _checks.positive("beta_r", beta_r)
    _checks.finite_where(mask, scores=scores)
    rewards = _safe(scores.detach(), mask)
    if group_normalize:
        weight = torch.ones_like(rewards) if mask is None else mask.to(rewards.dtype)
        count = weight.sum(dim=-1, keepdim=True)
        mean = (rewards * weight).sum(dim=-1, keepdim=True) / count
        std = (((rewards - mean) ** 2 * weight).sum(dim=-1, keepdim=True) / count).sqrt()
        rewards = (rewards - mean) / (std + 1e-8)
    logits = rewards / beta_r
    if mask is not None:
        logits = logits.masked_fill(~mask, float("-inf"))
    return torch.softmax(logits, dim=-1)


def irpo(
    logps: Tensor,
    ref_logps: Tensor,
    labels: Tensor,
    *,
    beta: float = 1.0,
    mask: Tensor | None = None,
    positions: Tensor | None = None,
) -> Tensor:
    """IRPO: positional aggregation of per-item pairwise preferences within a ranked list.

    Paper: Wu, Surana et al. 2025, "In-context Ranking Preference Optimization",
    arXiv 2504.15477, the objective as implemented in the official code (algorithms.md §8).

    With ``r_i = logps_i − ref_logps_i`` (item log-ratio), graded relevance ``rel = labels``
    and 1-based display position ``rank_i``:
    ``w_i = (2^{rel_i} − 1) / log2(1 + rank_i)``,
    ``lse_i = log((1/(K−1)) Σ_{j≠i} exp(β (r_j − r_i)))``,
    ``loss = −(1/K) Σ_i w_i log σ(−lse_i)``, with K the number of real items in the list.
    Items with ``rel = 0`` have weight 0.

    Args:
        logps, ref_logps: ``[B, K]`` item log-prob sums (items in list order).
        labels: ``[B, K]`` graded relevance (>= 0).
        beta: β > 0 (code default 1.0).
        mask: optional ``[B, K]`` bool.
        positions: optional ``[B, K]`` 1-based positions of the items in the generated list;
            default: the column order ``1..K``, which counts masked slots too, so pass
            ``positions`` when padding sits between real items.
    """
    shape = _list_inputs(logps, ref_logps, labels, mask)
    _checks.positive("beta", beta)
    if positions is None:
        positions = torch.arange(1, shape[1] + 1, device=logps.device).expand(shape)
    else:
        _checks.same_shape(2, logps=logps, positions=positions.to(logps.dtype))
        _checks.values_in(
            "positions", _safe(positions.to(logps.dtype), mask, 1.0), 1.0, float("inf")
        )
    _checks.values_in("labels", _safe(labels, mask), 0.0, float("inf"))
    log_ratio = _safe(logps, mask) - _safe(ref_logps, mask)
    relevance = _safe(labels.detach(), mask)
    weights = (torch.exp2(relevance) - 1) / torch.log2(1 + positions.to(logps.dtype))
    diff = beta * (log_ratio[:, None, :] - log_ratio[:, :, None])  # [B, i, j] = β (r_j − r_i)
    others = ~torch.eye(shape[1], dtype=torch.bool, device=logps.device)
    if mask is None:
        n_items = torch.full((shape[0],), float(shape[1]), dtype=logps.dtype, device=logps.device)
    else:
        others = others & mask[:, None, :] & mask[:, :, None]
        n_items = mask.sum(dim=-1).to(logps.dtype)
    # A finite floor instead of −inf keeps the gradient of logsumexp NaN-free for masked rows.
    diff = diff.masked_fill(~others, torch.finfo(diff.dtype).min / 4)
    lse = torch.logsumexp(diff, dim=-1) - torch.log(n_items - 1)[:, None]
    per_item = _safe(weights * F.logsigmoid(-lse), mask)
    return -per_item.sum(dim=-1) / n_items
