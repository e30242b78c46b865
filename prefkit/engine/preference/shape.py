"""The preference-model step shape: the losses of ``bt``, ``gpm`` and ``pairpm`` on pairs (the
driver, ``prefkit.engine.run``, owns the optimisation).

Losses (all from :mod:`prefkit.losses`), with ``p`` the pair's label P(chosen beats rejected)
after label smoothing ``p <- p (1 - eps) + (1 - p) eps``:

- ``bt``: ``bradley_terry(r_c, r_r, margin=m, label_smoothing=1 - p, preference_strength=mu)``,
  i.e. ``-p log sigmoid(d) - (1 - p) log sigmoid(-d)`` with ``d = r_c - r_r - m``;
- ``gpm``: ``p * gpm(v_c, v_r, margin=m) + (1 - p) * gpm(v_r, v_c, margin=-m)`` (the same soft
  target on ``(s - m) / tau``);
- ``pairpm``: binary cross-entropy in both orders, ``(BCE(f(x, c, r), p) + BCE(f(x, r, c), 1 - p)) / 2``.

Ties (label 1/2) are trained toward P = 1/2 (``rm.ties=train``, the default) or left out and
counted (``rm.ties=exclude``). Margins (the ``margin`` column plus ``rm.margin``, and the
adaptive margin ``rm.adaptive_margin * strength_mean``) apply to hard-labelled pairs only. A
label below 1/2 is read as the swapped pair with label ``1 - p``.

Every pair's training loss is recorded each time it is seen (its *loss history*, for the
training-dynamics noise detector of :mod:`prefkit.preference.noise`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from prefkit.config import RewardModelConfig
from prefkit.engine.data import batch_indices
from prefkit.engine.metrics import MetricSums
from prefkit.engine.offline.shapes import split
from prefkit.engine.preference.data import PairData
from prefkit.engine.run import LossOutput, MicroBatch, RunSession, StepShape
from prefkit.losses import bradley_terry, gpm
from prefkit.preference.backbone import TextBackbone
from prefkit.preference.base import TIE
from prefkit.preference.models import (
    EmbeddingPreferenceModel,
    NeuralPreferenceModel,
    PairwisePreferenceModel,
)


def collate(backbone: Any, rows: list[Any], truncation: str) -> Any:
    if isinstance(backbone, TextBackbone):
        return backbone.collate(rows, truncation=truncation)
    return backbone.collate(rows)


def pair_objective(
    model: NeuralPreferenceModel,
    data: PairData,
    index: Sequence[int],
    rm: RewardModelConfig,
    *,
    truncation: str = "truncate",
    forward: Callable[[Any], torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, int, dict[str, torch.Tensor]]:
    """One micro-batch: ``(per-example loss [B], logit of P(chosen beats rejected) [B], tokens,
    extra metrics)``, with gradients. ``forward`` is the module to call (a data-parallel wrapper
    of ``model``; default ``model`` itself)."""
    forward = forward or model
    rows = [data.rows[i] for i in index]
    n = len(rows)
    label = data.labels[index].to(model.device)
    target = label * (1 - rm.label_smoothing) + (1 - label) * rm.label_smoothing
    hard = (label == 1.0).float()
    margin = data.margins[index].to(model.device) * hard
    extra: dict[str, torch.Tensor] = {}
    if isinstance(model, PairwisePreferenceModel):
        batch = collate(model.backbone, [[p, c, r] for p, c, r in rows] + [[p, r, c] for p, c, r in rows], truncation)
        f = forward(batch)
        forward, backward = f[:n], f[n:]
        per = 0.5 * (
            F.binary_cross_entropy_with_logits(forward, target, reduction="none")
            + F.binary_cross_entropy_with_logits(backward, 1 - target, reduction="none")
        )
        logit = PairwisePreferenceModel.debiased_logit(forward.detach(), backward.detach())
        extra["position_gap"] = (torch.sigmoid(forward) - (1 - torch.sigmoid(backward))).detach().abs()
    elif isinstance(model, EmbeddingPreferenceModel):
        batch = collate(model.backbone, [[p, c] for p, c, _ in rows] + [[p, r] for p, _, r in rows], truncation)
        e = forward(batch)
        e_c, e_r = e[:n], e[n:]
        if model.kind == "bt":
            strength = data.strength[index].to(model.device) * hard if data.strength is not None else None
            per = bradley_terry(e_c[:, 0], e_r[:, 0], margin=margin, label_smoothing=1 - target,
                                preference_strength=strength, strength_scale=rm.adaptive_margin or 1.0,
                                center_rewards_coefficient=rm.center_rewards_coefficient)
            extra["rewards/chosen"], extra["rewards/rejected"] = e_c[:, 0].detach(), e_r[:, 0].detach()
        else:
            head = model.head
            v_c, lam_c = head.split(e_c)
            v_r, lam_r = head.split(e_r)
            lam = 0.5 * (lam_c + lam_r) if head.eigenvalue_mode == "prompt" else lam_c
            per = target * gpm(v_c, v_r, tau=head.tau, eigenvalues=lam, margin=margin) + (1 - target) * gpm(
                v_r, v_c, tau=head.tau, eigenvalues=lam, margin=-margin
            )
        logit = model.logits_from_embeddings(e_c, e_r).detach()
    else:  # pragma: no cover - build_model only makes the classes above
        raise TypeError(f"cannot train {type(model).__name__}")
    tokens = batch.num_tokens if hasattr(batch, "num_tokens") else int(batch.shape[0])
    return per, logit, tokens, extra


class LossHistory:
    """Each pair's training losses, summed and counted (for the training-dynamics detector)."""

    def __init__(self, n: int) -> None:
        self.total = torch.zeros(n, dtype=torch.float64)
        self.squares = torch.zeros(n, dtype=torch.float64)
        self.count = torch.zeros(n, dtype=torch.long)

    def add(self, index: Sequence[int], losses: torch.Tensor) -> None:
        where = torch.as_tensor(list(index), dtype=torch.long)
        values = losses.detach().double().cpu()
        self.total.index_add_(0, where, values)
        self.squares.index_add_(0, where, values**2)
        self.count.index_add_(0, where, torch.ones_like(where))

    def mean(self) -> torch.Tensor:
        return self.total / self.count.clamp_min(1)

    def state_dict(self) -> dict[str, list]:
        return {"total": self.total.tolist(), "squares": self.squares.tolist(), "count": self.count.tolist()}

    def load_state_dict(self, state: dict[str, list]) -> None:
        self.total = torch.tensor(state["total"], dtype=torch.float64)
        self.squares = torch.tensor(state["squares"], dtype=torch.float64)
        self.count = torch.tensor(state["count"], dtype=torch.long)




class PreferenceShape(StepShape):
    """Pairs of a preference model: units are pairs; each pair's loss is also recorded in its
    loss history (checkpointed with the run)."""

    def __init__(self, session: RunSession, model: NeuralPreferenceModel, data: PairData, rm: RewardModelConfig,
                 *, label: str) -> None:
        if len(data) == 0:
            raise ValueError("no pairs to train on")
        self.session, self.model, self.data, self.rm = session, model, data, rm
        self.train = session.cfg.train
        self.seed = session.cfg.seed
        self.label = label
        self.losses = LossHistory(len(data))
        session.require_batch(self.train.batch_size, "train.batch_size", micro=self.train.grad_accum)

    def micro_batches(self, step: int) -> list[MicroBatch]:
        index = batch_indices(len(self.data), self.train.batch_size, step, self.seed, self.train.shuffle)
        return [MicroBatch(len(rows), rows) for rows in split(self.session.shard(index), self.train.grad_accum)]

    def loss(self, model: nn.Module, micro: MicroBatch) -> LossOutput:
        rows = micro.data
        per, logit, tokens, extra = pair_objective(self.model, self.data, rows, self.rm,
                                                   truncation=self.train.truncation, forward=model)
        self.losses.add(rows, per)
        weighted = per.float() * self.data.weights[rows].to(per.device)
        metrics = MetricSums()
        decided = self.data.labels[rows].to(logit.device) > TIE
        metrics.add("rewards/accuracies", (logit[decided] > 0).float())
        metrics.add("rewards/margins", logit)
        for name, values in extra.items():
            metrics.add(name, values)
        return LossOutput(weighted.sum(), metrics, tokens)

    def state_dict(self) -> dict[str, Any]:
        return {"losses": self.losses.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.losses.load_state_dict(state["losses"])
