"""Pairwise evaluation of any preference model on labelled pairs.

A pair counts as right when the model's ``P(chosen beats rejected | x) > 1/2`` (strictly: a
model that answers exactly 1/2 has not decided). Pairs labelled 1/2 (ties) are reported
separately: their count and how far the model's probability is from 1/2. A label below 1/2 means
the rejected response is preferred and is scored that way. The log loss uses every pair with
its (possibly soft) label.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from prefkit.data.records import PairRecord
from prefkit.preference.base import TIE, PreferenceModel, call_batched, checked_probabilities


def probabilities(model: PreferenceModel, records: Sequence[PairRecord], *, batch_size: int = 64) -> torch.Tensor:
    """``P(chosen beats rejected | prompt)`` for each record, validated."""
    prompts = [r.prompt for r in records]
    chosen = [r.chosen for r in records]
    rejected = [r.rejected for r in records]
    p = call_batched(model.prob, prompts, chosen, rejected, batch_size=batch_size)
    return checked_probabilities(p, len(records), judge=type(model).__name__)


def accuracy_from_probabilities(p: torch.Tensor, labels: torch.Tensor) -> dict[str, Any]:
    """The numbers of :func:`evaluate_pairs` from probabilities and labels (both ``[N]``)."""
    p, labels = p.double(), labels.double()
    tie = labels == TIE
    decided = ~tie
    right = torch.where(labels > TIE, p > 0.5, p < 0.5) & decided
    n = int(decided.sum())
    clipped = p.clamp(1e-12, 1 - 1e-12)
    log_loss = -(labels * clipped.log() + (1 - labels) * (1 - clipped).log())
    oriented = torch.where(labels >= TIE, p, 1 - p)
    return {
        "accuracy": float(right.sum()) / n if n else None,
        "n": n,
        "ties": int(tie.sum()),
        "tie_mean_abs_deviation": float((p[tie] - 0.5).abs().mean()) if bool(tie.any()) else None,
        "undecided": int(((p == 0.5) & decided).sum()),
        "log_loss": float(log_loss.mean()) if len(p) else None,
        "mean_prob_preferred": float(oriented[decided].mean()) if n else None,
    }


def evaluate_pairs(model: PreferenceModel, records: Sequence[PairRecord], *, batch_size: int = 64) -> dict[str, Any]:
    """``{"accuracy", "n", "ties", "tie_mean_abs_deviation", "undecided", "log_loss",
    "mean_prob_preferred"}`` (``n`` counts the non-tie pairs that ``accuracy`` is over)."""
    if not records:
        raise ValueError("no pairs to evaluate")
    p = probabilities(model, records, batch_size=batch_size)
    labels = torch.tensor([r.label for r in records], dtype=torch.float64)
    out = accuracy_from_probabilities(p, labels)
    if out["accuracy"] is not None and not math.isfinite(out["accuracy"]):  # pragma: no cover
        raise ValueError("accuracy is not finite")
    return out
