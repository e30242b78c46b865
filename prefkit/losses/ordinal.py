"""Ordinal reward-model losses: a scalar score and ordered thresholds fitted to graded labels.

A response with score ``f = r(x, y)`` gets rating class ``c`` in ``0..L-1`` under the
cumulative-logit (proportional-odds) model (McCullagh 1980, "Regression models for ordinal data",
JRSS-B 42(2), eq. 2.4):

    P(c <= j | x, y) = sigmoid(theta_j - f),   theta_0 < theta_1 < ... < theta_{L-2}

so ``f`` is a Bradley-Terry-compatible reward: a higher score moves mass to higher ratings, and
``P(a beats b)`` can be read as ``sigmoid(f_a - f_b)``. Two objectives (``variant``):

- ``"likelihood"``: the exact negative log-likelihood of the class,
  ``-log(sigmoid(theta_c - f) - sigmoid(theta_{c-1} - f))`` with ``theta_{-1} = -inf`` and
  ``theta_{L-1} = +inf``, computed stably as
  ``-[log sigmoid(theta_c - f) + log sigmoid(f - theta_{c-1}) + log(1 - exp(theta_{c-1} - theta_c))]``;
- ``"nested"``: the nested binary objectives of GNOLR (Zhang et al. 2025, "Embed Progressive
  Implicit Preference in Unified Space for Deep Collaborative Filtering", arXiv 2505.20900):
  one logistic loss per nested event "rating above level j", all sharing the score,
  ``sum_j w_j * BCE(sigmoid(f - theta_j), [c > j])`` (the all-threshold loss of Rennie & Srebro
  2005). The exact weighting GNOLR uses is not verified here [U]; ``weights`` (default all ones)
  sets ``w_j``.

Labels are class indices ``0..L-1`` (a 1..L rating minus 1). Thresholds are data of the model (a
head's parameters, see ``prefkit.preference.ordinal``); they must be strictly increasing.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from prefkit.losses import _checks

Tensor = torch.Tensor
Variant = Literal["likelihood", "nested"]


def _log1mexp(x: Tensor) -> Tensor:
    """``log(1 - exp(x))`` for ``x < 0``, stable at both ends (Mächler 2012)."""
    return torch.where(x > -0.6931471805599453, torch.log(-torch.expm1(x)), torch.log1p(-torch.exp(x)))


def ordinal(
    scores: Tensor,
    thresholds: Tensor,
    labels: Tensor,
    *,
    variant: Variant = "likelihood",
    weights: Tensor | None = None,
) -> Tensor:
    """Cumulative-logit ordinal loss (see the module doc), ``[B]``.

    Papers: McCullagh 1980, "Regression models for ordinal data", eq. 2.4 (the likelihood);
    Zhang et al. 2025 (GNOLR), arXiv 2505.20900, nested objectives (``variant="nested"``).

    Args:
        scores: ``[B]`` scores ``f`` (with gradients).
        thresholds: ``[L-1]`` or ``[B, L-1]`` strictly increasing thresholds (with gradients).
        labels: ``[B]`` integer classes in ``0..L-1``.
        variant: ``"likelihood"`` (exact NLL) or ``"nested"`` (GNOLR-style nested binary losses).
        weights: ``[L-1]`` non-negative weights of the nested events (``"nested"`` only).
    """
    _checks.same_shape(1, scores=scores)
    _checks.tensor("thresholds", thresholds)
    if variant not in ("likelihood", "nested"):
        raise ValueError(f"variant must be 'likelihood' or 'nested', got {variant!r}")
    b = scores.shape[0]
    if thresholds.ndim == 1:
        thresholds = thresholds.unsqueeze(0).expand(b, -1)
    if thresholds.ndim != 2 or thresholds.shape[0] != b or thresholds.shape[1] < 1:
        raise ValueError(f"thresholds must have shape [L-1] or [B, L-1] with L >= 2, got {tuple(thresholds.shape)}")
    levels = thresholds.shape[1] + 1
    if not isinstance(labels, torch.Tensor) or labels.dtype not in (torch.int64, torch.int32) or labels.shape != (b,):
        raise ValueError(f"labels must be an integer tensor of shape ({b},), got "
                         f"{getattr(labels, 'dtype', type(labels).__name__)} {tuple(getattr(labels, 'shape', ()))}")
    if weights is not None and variant != "nested":
        raise ValueError("weights apply to variant='nested'")
    _checks.finite(scores=scores, thresholds=thresholds)
    if _checks.value_checks_enabled(scores):
        if bool(((labels < 0) | (labels >= levels)).any()):
            raise ValueError(f"labels must be classes in 0..{levels - 1}, got {labels.min().item()}..{labels.max().item()}")
        if levels > 2 and not bool((thresholds[:, 1:] > thresholds[:, :-1]).all()):
            raise ValueError("thresholds must be strictly increasing")
    labels = labels.long()
    if variant == "nested":
        above = (labels[:, None] > torch.arange(levels - 1, device=labels.device)[None, :]).to(scores.dtype)
        per_event = F.binary_cross_entropy_with_logits(scores[:, None] - thresholds, above, reduction="none")
        if weights is not None:
            _checks.tensor("weights", weights)
            if weights.shape != (levels - 1,):
                raise ValueError(f"weights must have shape ({levels - 1},), got {tuple(weights.shape)}")
            _checks.finite(weights=weights)
            if _checks.value_checks_enabled(weights) and bool((weights < 0).any()):
                raise ValueError("weights must be >= 0")
            per_event = per_event * weights.detach()
        return per_event.sum(dim=1)
    inf = torch.full((b, 1), float("inf"), dtype=scores.dtype, device=scores.device)
    padded = torch.cat([-inf, thresholds, inf], dim=1)  # theta_{-1} .. theta_{L-1}
    upper = padded.gather(1, (labels + 1)[:, None]).squeeze(1)
    lower = padded.gather(1, labels[:, None]).squeeze(1)
    log_upper = torch.where(torch.isinf(upper), torch.zeros_like(scores), F.logsigmoid(upper - scores))
    log_lower = torch.where(torch.isinf(lower), torch.zeros_like(scores), F.logsigmoid(scores - lower))
    both = ~torch.isinf(upper) & ~torch.isinf(lower)
    gap = torch.where(both, lower - upper, torch.full_like(scores, -1.0))
    log_width = torch.where(both, _log1mexp(gap), torch.zeros_like(scores))
    return -(log_upper + log_lower + log_width)


def ordinal_probabilities(scores: Tensor, thresholds: Tensor) -> Tensor:
    """``[B, L]`` class probabilities ``P(c = j)`` of the cumulative-logit model."""
    if thresholds.ndim == 1:
        thresholds = thresholds.unsqueeze(0).expand(scores.shape[0], -1)
    cumulative = torch.sigmoid(thresholds - scores[:, None])
    ones = torch.ones_like(scores)[:, None]
    zeros = torch.zeros_like(scores)[:, None]
    return torch.cat([cumulative, ones], 1) - torch.cat([zeros, cumulative], 1)
