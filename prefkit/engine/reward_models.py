"""Training preference models through the one optimisation loop (``prefkit.engine.loop.optimize``).

This module supplies the step (``step_fn(step, optimizer) -> (metrics, tokens)``); the engine
owns the schedule, clipping, the optimizer step, the non-finite stop, metrics, checkpoints and
``--resume``.

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

import contextlib
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from prefkit.cards import write_model_card
from prefkit.config import RewardModelConfig, RunConfig
from prefkit.data.records import PairRecord
from prefkit.engine.loop import batch_indices, optimize, start_run
from prefkit.errors import InputError
from prefkit.losses import bradley_terry, gpm
from prefkit.preference.backbone import TextBackbone, load_backbone, tiny_backbone
from prefkit.preference.base import TIE
from prefkit.preference.heads import build_head
from prefkit.preference.models import (
    EmbeddingPreferenceModel,
    PairwisePreferenceModel,
    _NeuralModel,
    build_model,
)
from prefkit.preference.seqcls import reward_model_for_training, uses_standard_format


@dataclass
class PairData:
    """Training pairs in a backbone's prepared form: ``rows[i] = [prompt, chosen, rejected]``
    segments, oriented so that ``labels >= 1/2``."""

    rows: list[list[Any]]
    labels: torch.Tensor
    margins: torch.Tensor
    weights: torch.Tensor
    strength: torch.Tensor | None = None
    sources: list[Any] = field(default_factory=list)
    ties_excluded: int = 0
    swapped: int = 0

    def __len__(self) -> int:
        return len(self.rows)


def _oriented(record: PairRecord) -> tuple[Any, Any, float, bool]:
    if record.label < TIE:
        return record.rejected, record.chosen, 1.0 - record.label, True
    return record.chosen, record.rejected, float(record.label), False


def pair_data(
    backbone: Any,
    records: Sequence[PairRecord],
    rm: RewardModelConfig,
    *,
    strength: Sequence[float] | None = None,
) -> PairData:
    """Prepare records for training (see the module doc for ties, orientation and margins)."""
    keep = [i for i, r in enumerate(records) if not (rm.ties == "exclude" and r.label == TIE)]
    if not keep:
        raise InputError("no pairs to train on" + (" (every pair is a tie and rm.ties=exclude)" if records else ""))
    chosen, rejected, labels, swapped = [], [], [], 0
    for i in keep:
        c, r, p, flipped = _oriented(records[i])
        chosen.append(c), rejected.append(r), labels.append(p)
        swapped += flipped
    rows = backbone.prepare([records[i].prompt for i in keep], chosen, rejected)
    margins = torch.tensor([(records[i].margin or 0.0) + rm.margin for i in keep], dtype=torch.float32)
    weights = torch.tensor([1.0 if records[i].weight is None else records[i].weight for i in keep])
    mu = None
    if rm.adaptive_margin:
        if strength is None:
            raise InputError("rm.adaptive_margin needs the strength_mean column (from `prefkit rm strength`)",
                             field="strength_mean")
        mu = torch.tensor([float(strength[i]) for i in keep], dtype=torch.float32)
    return PairData(rows=rows, labels=torch.tensor(labels, dtype=torch.float32), margins=margins,
                    weights=weights.float(), strength=mu, sources=[records[i].source for i in keep],
                    ties_excluded=len(records) - len(keep), swapped=swapped)


def tensor_pair_data(
    backbone: Any,
    prompts: torch.Tensor,
    chosen: torch.Tensor,
    rejected: torch.Tensor,
    labels: torch.Tensor | None = None,
) -> PairData:
    """Pairs of feature vectors (``FeatureBackbone``); labels default to 1."""
    n = chosen.shape[0]
    labels = torch.ones(n) if labels is None else labels.float()
    flip = labels < TIE
    c = torch.where(flip[:, None], rejected, chosen)
    r = torch.where(flip[:, None], chosen, rejected)
    return PairData(rows=backbone.prepare(prompts, c, r), labels=torch.where(flip, 1 - labels, labels),
                    margins=torch.zeros(n), weights=torch.ones(n), swapped=int(flip.sum()))


def _collate(backbone: Any, rows: list[Any], truncation: str) -> Any:
    if isinstance(backbone, TextBackbone):
        return backbone.collate(rows, truncation=truncation)
    return backbone.collate(rows)


def pair_objective(
    model: _NeuralModel,
    data: PairData,
    index: Sequence[int],
    rm: RewardModelConfig,
    *,
    truncation: str = "truncate",
) -> tuple[torch.Tensor, torch.Tensor, int, dict[str, torch.Tensor]]:
    """One micro-batch: ``(per-example loss [B], logit of P(chosen beats rejected) [B], tokens,
    extra metrics)``, with gradients."""
    rows = [data.rows[i] for i in index]
    n = len(rows)
    label = data.labels[index].to(model.device)
    target = label * (1 - rm.label_smoothing) + (1 - label) * rm.label_smoothing
    hard = (label == 1.0).float()
    margin = data.margins[index].to(model.device) * hard
    extra: dict[str, torch.Tensor] = {}
    if isinstance(model, PairwisePreferenceModel):
        batch = _collate(model.backbone, [[p, c, r] for p, c, r in rows] + [[p, r, c] for p, c, r in rows], truncation)
        f = model.logits_train(batch)
        forward, backward = f[:n], f[n:]
        per = 0.5 * (
            F.binary_cross_entropy_with_logits(forward, target, reduction="none")
            + F.binary_cross_entropy_with_logits(backward, 1 - target, reduction="none")
        )
        logit = PairwisePreferenceModel.debiased_logit(forward.detach(), backward.detach())
        extra["position_gap"] = (torch.sigmoid(forward) - (1 - torch.sigmoid(backward))).detach().abs()
    elif isinstance(model, EmbeddingPreferenceModel):
        batch = _collate(model.backbone, [[p, c] for p, c, _ in rows] + [[p, r] for p, _, r in rows], truncation)
        e = model.embed_train(batch)
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


@dataclass
class FitResult:
    history: list[dict[str, Any]]
    last_metrics: dict[str, Any]
    losses: LossHistory
    steps: int
    tokens: int
    wall_s: float


def _micro_batches(index: Sequence[int], grad_accum: int) -> list[list[int]]:
    size = len(index) // grad_accum
    return [list(index[i * size : (i + 1) * size]) for i in range(grad_accum)]


def fit(
    cfg: RunConfig,
    model: _NeuralModel,
    data: PairData,
    *,
    resume_from: Path | None = None,
    progress: bool | None = False,
    evaluate: Callable[[int], dict[str, Any]] | None = None,
) -> FitResult:
    """Train ``model`` on ``data`` for ``cfg.train.steps`` optimizer steps (or ``train.epochs``
    passes over the pairs) with the engine's loop (outputs in ``cfg.out``: ``config.yaml``,
    ``metrics.jsonl``, ``checkpoints/``). The head learns at ``rm.head_lr`` (default
    ``train.lr``), the backbone at ``train.lr``."""

    if len(data) == 0:
        raise InputError("no pairs to train on")
    cfg = replace(cfg, train=cfg.train.steps_for(len(data)))
    losses = LossHistory(len(data))
    rm, train = cfg.rm, cfg.train
    device = model.device
    autocast = (
        (lambda: torch.autocast(device_type=device.type, dtype=torch.bfloat16))
        if train.precision == "bf16" and device.type == "cuda"
        else contextlib.nullcontext
    )
    model.train()

    def step_fn(step: int, optimizer: torch.optim.Optimizer) -> tuple[dict[str, float], int]:
        index = batch_indices(len(data), train.batch_size, step, cfg.seed, train.shuffle)
        total, tokens = len(index), 0
        sums: dict[str, float] = {}
        counted: dict[str, int] = {}

        def add(name: str, values: torch.Tensor, mask: torch.Tensor | None = None) -> None:
            values = values.detach().float()
            if mask is not None:
                values, k = values[mask], int(mask.sum())
            else:
                k = values.numel()
            sums[name] = sums.get(name, 0.0) + float(values.sum())
            counted[name] = counted.get(name, 0) + k

        for micro in _micro_batches(index, train.grad_accum):
            with autocast():
                per, logit, micro_tokens, extra = pair_objective(model, data, micro, rm, truncation=train.truncation)
            weights = data.weights[micro].to(per.device)
            (per.float() * weights).sum().div(total).backward()
            losses.add(micro, per)
            tokens += micro_tokens
            labels = data.labels[micro].to(logit.device)
            add("loss", per * weights)
            add("rewards/accuracies", (logit > 0).float(), labels > TIE)
            add("rewards/margins", logit)
            for name, values in extra.items():
                add(name, values)
        metrics = {name: sums[name] / max(1, counted[name]) for name in sums}
        metrics["loss"] = sums["loss"] / total
        return metrics, tokens

    run = optimize(
        cfg, model=model, step_fn=step_fn, label=f"rm:{rm.kind}", resume_from=resume_from, progress=progress,
        evaluate=evaluate, extra_state=lambda: {"losses": losses.state_dict()},
        restore_extra=lambda state: losses.load_state_dict(state["losses"]),
        param_lr=head_learning_rates(cfg, model),
    )
    model.eval()
    return FitResult(run.history, run.last_metrics, losses, run.state.step, run.state.tokens, run.state.wall_s)


def head_learning_rates(cfg: RunConfig, model: _NeuralModel) -> Callable[[str], float]:
    """A preference model's parameter -> base learning rate: ``rm.head_lr`` for the head (the
    parameters under ``model.head_prefixes``), ``train.lr`` for everything else."""
    head_lr = cfg.rm.head_lr if cfg.rm.head_lr is not None else cfg.train.lr
    prefixes = model.head_prefixes
    return lambda name: head_lr if name.startswith(prefixes) else cfg.train.lr


def build_preference_model(cfg: RunConfig, records: Sequence[PairRecord], device: torch.device) -> _NeuralModel:
    """``cfg.model`` (``tiny`` or a local Hugging Face directory) with the ``cfg.rm`` head.

    The tiny preset's tokenizer is fitted on the records' texts; weights (backbone and head)
    are initialised from ``cfg.seed``.
    """
    rm = cfg.rm
    texts: list[str] = []
    if cfg.model == "tiny":
        for r in records:
            for value in (r.prompt, r.chosen, r.rejected):
                texts.extend([value] if isinstance(value, str) else [m["content"] for m in value])
    if uses_standard_format(cfg.model, rm, trust_remote_code=cfg.trust_remote_code):  # docs/preference.md
        return reward_model_for_training(cfg.model, texts, cfg.tiny, seed=cfg.seed, max_length=cfg.train.max_length,
                                         dropout=rm.dropout, freeze_backbone=rm.freeze_backbone, device=device,
                                         trust_remote_code=cfg.trust_remote_code)
    if cfg.model == "tiny":
        backbone = tiny_backbone(texts, cfg.tiny, seed=cfg.seed, pooling=rm.pooling, max_length=cfg.train.max_length,
                                 device=device)
    else:
        backbone = load_backbone(cfg.model, kind=rm.backbone, pooling=rm.pooling, max_length=cfg.train.max_length,
                                 device=device, trust_remote_code=cfg.trust_remote_code)
    if rm.freeze_backbone:
        backbone.freeze_body()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        head = build_head(rm.kind, backbone.hidden_size, dim=rm.dim, tau=rm.tau, normalize=rm.normalize,
                          eigenvalues=rm.eigenvalues, dropout=rm.dropout)
    return build_model(rm.kind, backbone, head).to(device)


def read_strength_column(path: str, records: Sequence[PairRecord], name: str = "strength_mean") -> list[float]:
    """The ``name`` column of each record's row (JSONL or Parquet), by the record's line."""
    suffix = Path(path).suffix.lower()
    values: list[float] = []
    if suffix in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        if name not in table.column_names:
            raise InputError(f"missing column '{name}' (write it with `prefkit rm strength`)", file=path, field=name)
        column = table.column(name).to_pylist()
        raw = [column[r.source[1] - 1] for r in records]
    else:
        with open(path, encoding="utf-8-sig") as handle:
            lines = handle.read().split("\n")
        raw = []
        for r in records:
            row = json.loads(lines[r.source[1] - 1])
            if name not in row:
                raise InputError(f"missing column '{name}' (write it with `prefkit rm strength`)", file=path,
                                 line=r.source[1], field=name)
            raw.append(row[name])
    for r, value in zip(records, raw):
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise InputError(f"must be a finite number, got {value!r}", file=path, line=r.source[1], field=name)
        values.append(float(value))
    return values


@dataclass
class TrainedPreferenceModel:
    model: _NeuralModel
    metrics: dict[str, Any]
    history: list[dict[str, Any]]
    losses: LossHistory
    data: PairData


def train_preference_model(
    cfg: RunConfig,
    *,
    records: Sequence[PairRecord] | None = None,
    eval_records: Sequence[PairRecord] | None = None,
    resume: bool = False,
    progress: bool | None = False,
    save: bool = True,
) -> TrainedPreferenceModel:
    """Train a ``cfg.rm.kind`` model on ``records`` (or ``cfg.data.path``) and write ``cfg.out``:
    ``config.yaml``, ``metrics.jsonl``, ``metrics.json``, ``checkpoints/``, ``model/`` (the saved
    preference model, docs/preference.md) and ``training_dynamics.jsonl`` (each pair's mean
    training loss)."""
    from prefkit.data import eval_source, read_pairs, train_source
    from prefkit.policy import resolve_device
    from prefkit.preference.evaluation import evaluate_pairs
    from prefkit.preference.io import save_preference_model

    out, latest = start_run(cfg, resume)
    device = resolve_device(cfg.train.device)
    report = None
    if records is None:
        if cfg.data.path is None:
            raise InputError("no training data: pass --data FILE", field="data.path")
        records, report = read_pairs(train_source(cfg.data), skip_invalid=cfg.data.skip_invalid)
    held_out = eval_source(cfg.data) if eval_records is None else None
    if held_out is not None:
        eval_records, _ = read_pairs(held_out, skip_invalid=cfg.data.skip_invalid)
    strength = None
    if cfg.rm.adaptive_margin:
        if cfg.data.path is None or cfg.data.split is not None or cfg.data.columns:
            raise InputError("rm.adaptive_margin reads strength_mean from the lines of a --data JSONL or Parquet "
                             "file (no data.split, no data.columns)", field="data.path")
        strength = read_strength_column(cfg.data.path, records)
    setup = time.perf_counter()
    model = build_preference_model(cfg, records, device)
    data = pair_data(model.backbone, records, cfg.rm, strength=strength)
    setup_s = time.perf_counter() - setup
    evaluate = (lambda step: evaluate_pairs(model, eval_records)) if eval_records else None
    result = fit(cfg, model, data, resume_from=latest, progress=progress, evaluate=evaluate)
    summary = {
        "kind": cfg.rm.kind,
        "steps": result.steps,
        "final_loss": result.last_metrics.get("loss"),
        "train_accuracy": result.last_metrics.get("rewards/accuracies"),
        "pairs": len(data),
        "ties_excluded": data.ties_excluded,
        "swapped_labels": data.swapped,
        "skipped_rows": len(report.skipped) if report is not None else 0,
        "tokens": result.tokens,
        "wall_s": result.wall_s,
        "setup_s": setup_s,
        **{k: v for k, v in result.last_metrics.items() if k.startswith("eval/")},
    }
    if save:
        save_preference_model(model, out / "model", extra={"data": cfg.data.path, "pairs": len(data),
                                                             "steps": result.steps, "seed": cfg.seed})
        (out / "metrics.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        write_model_card(out / "model", replace(cfg, train=cfg.train.steps_for(len(data))), summary,
                         role="preference_model")
        mean = result.losses.mean()
        with open(out / "training_dynamics.jsonl", "w", encoding="utf-8") as handle:
            for i, source in enumerate(data.sources):
                handle.write(json.dumps({"line": source[1] if source else None, "mean_loss": float(mean[i]),
                                         "visits": int(result.losses.count[i])}) + "\n")
    return TrainedPreferenceModel(model, summary, result.history, result.losses, data)
