"""Noisy labels: ensemble preference strength, MC-dropout (BALD) uncertainty, loss-history outliers.

Three detectors rank pairs by how likely their label is wrong:

- **ensemble strength** (Wang et al. 2024, "Secrets of RLHF in LLMs Part II", arXiv 2401.06080,
  §3.1): M models trained with different seeds and data orders; per pair the mean ``μ̂`` and
  spread ``σ̂`` of ``logit P(chosen beats rejected)`` (for a reward model exactly the reward
  gap ``r(y_c) - r(y_r)``) via :func:`prefkit.losses.preference_strength`. Lowest ``μ̂`` first.
- **BALD** (Houlsby et al. 2011; as used by UPO, Wang et al. 2024, arXiv 2409.11212, eq. for
  ``B̂``): T stochastic passes with dropout on; ``H(mean_t p_t) - mean_t H(p_t)`` for the binary
  outcome. Highest first (most epistemic uncertainty).
- **loss-history outliers** (in the spirit of Dynamic Bad Pair Mining, Lan et al. 2024, arXiv
  2302.03357): each pair's mean training loss over the run, standardised by the global mean and
  std over pairs; highest first (a mislabelled pair keeps a large loss while the rest is fitted).

Then: flag the ``k`` top-ranked pairs, and flip, smooth (label <- the ensemble's
``sigmoid(μ̂)``) or drop them (:func:`relabel`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Literal

import torch

from prefkit.data.records import PairRecord
from prefkit.losses import preference_strength
from prefkit.preference.base import PreferenceModel, call_batched

Action = Literal["none", "flip", "smooth", "drop"]
Detector = Literal["ensemble", "bald", "dynamics"]


def pair_logits(model: PreferenceModel, records: Sequence[PairRecord], *, batch_size: int = 64,
                dropout: bool = False) -> torch.Tensor:
    """``logit P(chosen beats rejected | prompt)`` per record, ``[N]`` (the file's orientation)."""
    prompts = [r.prompt for r in records]
    chosen = [r.chosen for r in records]
    rejected = [r.rejected for r in records]
    logits = getattr(model, "logits", None)
    if callable(logits):
        return logits(prompts, chosen, rejected, batch_size=batch_size, dropout=dropout).float()
    if dropout:
        raise ValueError(f"{type(model).__name__} has no dropout to sample (MC-dropout needs a neural model)")
    p = call_batched(model.prob, prompts, chosen, rejected, batch_size=batch_size).double()
    return torch.logit(p.clamp(1e-9, 1 - 1e-9)).float()


def ensemble_strength(models: Sequence[PreferenceModel], records: Sequence[PairRecord], *,
                      batch_size: int = 64) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(mean [N], std [N], logits [M, N])`` of the members' ``logit P(chosen beats rejected)``."""
    if not models:
        raise ValueError("an ensemble needs at least one model")
    logits = torch.stack([pair_logits(m, records, batch_size=batch_size) for m in models])
    mean, std = preference_strength(logits)
    return mean, std, logits


def mc_dropout_probabilities(model: PreferenceModel, records: Sequence[PairRecord], *, passes: int = 10,
                             batch_size: int = 64, seed: int = 0) -> torch.Tensor:
    """``[T, N]`` probabilities from ``passes`` forward passes with dropout on (MC-dropout)."""
    if passes < 2:
        raise ValueError(f"MC-dropout needs at least 2 passes, got {passes}")
    if not any(isinstance(m, torch.nn.Dropout) and m.p > 0 for m in getattr(model, "modules", list)()):
        raise ValueError("the model has no dropout (train it with rm.dropout > 0 for MC-dropout)")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return torch.stack([
            torch.sigmoid(pair_logits(model, records, batch_size=batch_size, dropout=True)) for _ in range(passes)
        ])


def _binary_entropy(p: torch.Tensor) -> torch.Tensor:
    p = p.double().clamp(1e-12, 1 - 1e-12)
    return -(p * p.log() + (1 - p) * (1 - p).log())


def bald(probabilities: torch.Tensor) -> torch.Tensor:
    """BALD information gain per pair from ``[T, N]`` stochastic probabilities (nats):
    ``H(mean_t p_t) - mean_t H(p_t)``; >= 0, 0 when all passes agree."""
    if probabilities.ndim != 2:
        raise ValueError(f"probabilities must be [T, N], got shape {tuple(probabilities.shape)}")
    return (_binary_entropy(probabilities.mean(0)) - _binary_entropy(probabilities).mean(0)).clamp_min(0).float()


def loss_outlier_scores(mean_losses: torch.Tensor) -> torch.Tensor:
    """Each pair's mean training loss standardised over pairs, ``(m_i - mean) / std`` (DBPM's
    global statistic); large positive values are likely mislabelled pairs."""
    m = mean_losses.double()
    std = m.std(unbiased=False)
    return ((m - m.mean()) / (std if std > 0 else 1.0)).float()


def suspicion(detector: Detector, *, strength_mean: torch.Tensor | None = None, bald_scores: torch.Tensor | None = None,
              loss_scores: torch.Tensor | None = None) -> torch.Tensor:
    """One score per pair, larger = more likely mislabelled, for the chosen detector."""
    if detector == "ensemble" and strength_mean is not None:
        return -strength_mean
    if detector == "bald" and bald_scores is not None:
        return bald_scores
    if detector == "dynamics" and loss_scores is not None:
        return loss_scores
    raise ValueError(f"detector {detector!r} needs its scores (ensemble: strength, bald: passes, dynamics: losses)")


def flag_top(scores: torch.Tensor, count: int) -> torch.Tensor:
    """Boolean mask of the ``count`` highest scores (ties broken by index, stable)."""
    n = scores.numel()
    if not 0 <= count <= n:
        raise ValueError(f"count must be in [0, {n}], got {count}")
    order = sorted(range(n), key=lambda i: (-float(scores[i]), i))
    mask = torch.zeros(n, dtype=torch.bool)
    mask[order[:count]] = True
    return mask


def precision_recall(flagged: torch.Tensor, truth: torch.Tensor) -> tuple[float, float]:
    """Precision and recall of a flag mask against the true mislabelled mask."""
    flagged, truth = flagged.bool(), truth.bool()
    hits = int((flagged & truth).sum())
    return (hits / int(flagged.sum()) if bool(flagged.any()) else 0.0,
            hits / int(truth.sum()) if bool(truth.any()) else 0.0)


def relabel(records: Sequence[PairRecord], flagged: torch.Tensor, action: Action, *,
            strength_mean: torch.Tensor | None = None) -> list[PairRecord]:
    """Apply ``action`` to the flagged records: ``flip`` swaps chosen and rejected, ``smooth``
    sets the label to ``sigmoid(μ̂)`` (the ensemble's belief; needs ``strength_mean``), ``drop``
    removes them, ``none`` keeps everything."""
    if len(flagged) != len(records):
        raise ValueError(f"{len(flagged)} flags for {len(records)} records")
    if action == "none":
        return list(records)
    out = []
    for record, bad, i in zip(records, flagged.tolist(), range(len(records))):
        if not bad:
            out.append(record)
        elif action == "flip":
            out.append(replace(record, chosen=record.rejected, rejected=record.chosen))
        elif action == "smooth":
            if strength_mean is None:
                raise ValueError("action 'smooth' needs the ensemble strength")
            out.append(replace(record, label=float(torch.sigmoid(strength_mean[i]))))
        elif action != "drop":
            raise ValueError(f"action must be none, flip, smooth or drop, got {action!r}")
    return out
