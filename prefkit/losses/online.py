"""Online objectives as pure functions: their inputs come from the sample -> judge -> update step.

Conventions: sequence log-probs are sums over response tokens, shape ``[B]``. Arguments named
``*_target``, ``preference*``, ``rewards`` or ``advantages`` are **detached targets** (treated
as constants; the functions detach them again to be safe). Gradients flow only through the
current policy's log-probs (``logps``, ``chosen_logps``, ...).
"""

from __future__ import annotations

import torch

from prefkit.losses import _checks


def online_ipo(
    chosen_logps: torch.Tensor,
    rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    preference_gap: torch.Tensor,
    *,
    beta: float = 0.1,
) -> torch.Tensor:
    """Online IPO regression (the OMD / EGPO loss), per example.

    Paper: Zhou, Fazel & Du 2025, "Extragradient Preference Optimization (EGPO)",
    arXiv 2503.08942, the online-IPO loss (algorithms.md §3.3-3.4; the official
    ``zhourunlong/EGPO`` code, ``online_ipo_1_sample``); Calandriello et al. 2024 for online IPO.

    ``loss = ((h_c - h_r) - preference_gap / beta)^2`` with ``h = logps - ref_logps``.

    Args:
        chosen_logps, rejected_logps: ``[B]`` log π_θ(y|x), log π_θ(y'|x) (carry gradients).
            "chosen"/"rejected" are only slot names here: y and y' are two samples, not a
            judged pair.
        ref_chosen_logps, ref_rejected_logps: ``[B]`` reference log-probs (constants).
        preference_gap: ``[B]`` detached target ``P(y ≻ y'') − P(y' ≻ y'')`` with ``y'' ~ q``
            (q = π_t for OMD / online IPO, q = π_{t+1/2} for EGPO's second step). Values lie
            in ``[-1, 1]``.
        beta: KL strength β > 0.

    Returns:
        ``[B]`` unreduced loss. Averaged over all N² pairs of a tabular softmax policy with
        exact targets ``P q``, one SGD step of learning rate ``lr`` equals the mirror-descent
        step ``log π' = (1 − ηβ) log π + ηβ log π_ref + η P q`` with ``η = 4·lr/(N·β)``.
    """
    _checks.same_shape(
        1,
        chosen_logps=chosen_logps,
        rejected_logps=rejected_logps,
        ref_chosen_logps=ref_chosen_logps,
        ref_rejected_logps=ref_rejected_logps,
        preference_gap=preference_gap,
    )
    _checks.positive("beta", beta)
    _checks.finite(
        chosen_logps=chosen_logps,
        rejected_logps=rejected_logps,
        ref_chosen_logps=ref_chosen_logps,
        ref_rejected_logps=ref_rejected_logps,
        preference_gap=preference_gap,
    )
    _checks.values_in("preference_gap", preference_gap, -1.0, 1.0)
    log_ratio_gap = (chosen_logps - ref_chosen_logps) - (rejected_logps - ref_rejected_logps)
    return (log_ratio_gap - preference_gap.detach() / beta) ** 2
