"""The ordinal reward model's step shape and run (``prefkit rm train --kind ordinal``).

Ratings (``prefkit.data.ratings``: rated lists ``prompt``/``completions``/``ratings`` or single
ratings ``prompt``/``completion``/``rating``) on the declared integer scale ``rm.scale=LOW-HIGH``
become one row ``[prompt, completion]`` per rated completion with the class ``rating - LOW``.
:class:`OrdinalShape` trains ``prefkit.preference.ordinal.ordinal_batch_loss`` (the cumulative-
logit likelihood, or GNOLR-style nested objectives, ``rm.ordinal_variant``) on them through the
run driver: units are rated completions, so the step's loss is the mean over its rows.

Held-out evaluation (``data.eval_path``): a ratings file gives ``eval/ordinal/accuracy`` (most
probable class), ``eval/ordinal/mae`` and ``eval/pair_accuracy`` (every pair of completions of one
rated list with different ratings, ranked by the reward); a pairs file gives
:func:`prefkit.preference.evaluation.evaluate_pairs`'s numbers. The saved model is a preference-
model directory (``kind: ordinal``, ``levels``; the scale in ``trained.scale``) usable wherever a
Bradley-Terry reward model is (``rm eval``, ``online.judge``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from prefkit._atomic import atomic_write_text
from prefkit.config import RunConfig
from prefkit.config.schema import rating_scale
from prefkit.data.ratings import RatingRecord, RatingsRecord
from prefkit.engine.data import batch_indices, require_plain_file
from prefkit.engine.metrics import MetricSums
from prefkit.engine.models import lora_summary
from prefkit.engine.offline.shapes import split
from prefkit.engine.preference.kinds import KindRun, register_kind_run
from prefkit.engine.preference.shape import LossHistory, collate
from prefkit.engine.preference.train import build_preference_model
from prefkit.engine.run import LossOutput, MicroBatch, RunSession, StepShape
from prefkit.errors import InputError
from prefkit.preference.backbone import TextBackbone
from prefkit.preference.ordinal import OrdinalRewardModel, ordinal_batch_loss


@dataclass
class RatingData:
    """Rated completions in a backbone's prepared form: ``rows[i] = [prompt, completion]``
    segments, ``labels[i]`` its class ``rating - low``; ``group[i]`` the rated list (prompt) it
    belongs to (single ratings: one group per prompt and annotator)."""

    rows: list[list[Any]]
    labels: torch.Tensor
    group: list[int]
    sources: list[Any] = field(default_factory=list)
    fields: list[str] = field(default_factory=list)
    """The field each row came from (``completions[j]`` or ``completion``), for messages."""
    prompts: list[Any] = field(default_factory=list)
    completions: list[Any] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.rows)


def flatten_ratings(records: Sequence[RatingsRecord | RatingRecord]) -> list[tuple[Any, Any, float, int, Any, str]]:
    """``(prompt, completion, rating, group, source, field)`` per rated completion."""
    out = []
    groups: dict[tuple[str, Any], int] = {}
    for record in records:
        if isinstance(record, RatingsRecord):
            g = len(groups)
            groups[(f"list-{g}", None)] = g
            for j, (completion, rating) in enumerate(zip(record.completions, record.ratings)):
                out.append((record.prompt, completion, rating, g, record.source, f"completions[{j}]"))
        elif isinstance(record, RatingRecord):
            key = (json.dumps(record.prompt, sort_keys=True), record.annotator)
            g = groups.setdefault(key, len(groups))
            out.append((record.prompt, record.completion, record.rating, g, record.source, "completion"))
        else:
            raise TypeError(f"ratings are RatingsRecord or RatingRecord rows, got {type(record).__name__}")
    return out


def rating_data(backbone: Any, records: Sequence[RatingsRecord | RatingRecord], *, low: int,
                levels: int) -> RatingData:
    """Prepare ratings for training; a rating off the scale ``low..low + levels - 1`` or not a
    whole number is an ``InputError`` naming its file, line and field."""
    flat = flatten_ratings(records)
    if not flat:
        raise InputError("no rated completions to train on")
    labels = []
    for _, _, rating, _, source, name in flat:
        c = float(rating) - low
        if c != int(c) or not 0 <= c < levels:
            file, line = source if source else (None, None)
            field_name = "ratings[" + name.split("[")[1] if name.startswith("completions[") else "rating"
            raise InputError(f"is {rating:g}, not a whole number on the scale {low}..{low + levels - 1} "
                             "(rm.scale)", file=file, line=line, field=field_name)
        labels.append(int(c))
    rows = backbone.prepare([f[0] for f in flat], [f[1] for f in flat])
    return RatingData(rows=rows, labels=torch.tensor(labels, dtype=torch.long), group=[f[3] for f in flat],
                      sources=[f[4] for f in flat], fields=[f[5] for f in flat], prompts=[f[0] for f in flat],
                      completions=[f[1] for f in flat])


def check_rating_lengths(backbone: Any, data: RatingData, *, truncation: str) -> int:
    """Rows longer than the backbone's ``max_length``, counted; with ``truncation="error"`` the first
    is an ``InputError`` naming its file, line and field (the rule of ``prefkit validate``)."""
    if not isinstance(backbone, TextBackbone):
        return 0
    over = 0
    for segments, source, name in zip(data.rows, data.sources, data.fields):
        problem = backbone.length_problem(segments, (name,), together=False)
        if problem is None:
            continue
        over += 1
        if truncation == "error":
            file, line = source if source else (None, None)
            raise InputError(problem.reason, file=file, line=line, field=problem.field)
    return over


def within_list_pairs(data: RatingData) -> tuple[torch.Tensor, torch.Tensor]:
    """``(better, worse)`` row indices of every pair of one group with different ratings."""
    by_group: dict[int, list[int]] = {}
    for i, g in enumerate(data.group):
        by_group.setdefault(g, []).append(i)
    better, worse = [], []
    for rows in by_group.values():
        for a in rows:
            for b in rows:
                if data.labels[a] > data.labels[b]:
                    better.append(a), worse.append(b)
    return torch.tensor(better, dtype=torch.long), torch.tensor(worse, dtype=torch.long)


class OrdinalShape(StepShape):
    """Rated completions of an ordinal reward model: units are rows (see the module docstring)."""

    def __init__(self, session: RunSession, model: OrdinalRewardModel, data: RatingData, *, variant: str,
                 label: str, eval_data: RatingData | None = None) -> None:
        if len(data) == 0:
            raise ValueError("no rated completions to train on")
        self.session, self.model, self.data, self.variant = session, model, data, variant
        self.train = session.cfg.train
        self.seed = session.cfg.seed
        self.label = label
        self.eval_data = eval_data
        self.losses = LossHistory(len(data))
        session.require_batch(self.train.batch_size, "train.batch_size", micro=self.train.grad_accum)

    def micro_batches(self, step: int) -> list[MicroBatch]:
        index = batch_indices(len(self.data), self.train.batch_size, step, self.seed, self.train.shuffle)
        return [MicroBatch(len(rows), rows) for rows in split(self.session.shard(index), self.train.grad_accum)]

    def _rows_loss(self, forward: Callable[[Any], torch.Tensor], data: RatingData,
                   rows: list[int]) -> tuple[torch.Tensor, dict[str, torch.Tensor], int]:
        batch = collate(self.model.backbone, [data.rows[i] for i in rows], self.train.truncation)
        per, metrics = ordinal_batch_loss(self.model, batch, data.labels[rows], variant=self.variant,  # type: ignore[arg-type]
                                          forward=forward)
        return per, metrics, batch.num_tokens

    def loss(self, model: nn.Module, micro: MicroBatch) -> LossOutput:
        rows = micro.data
        per, extra, tokens = self._rows_loss(model, self.data, rows)
        self.losses.add(rows, per)
        metrics = MetricSums()
        for name, values in extra.items():
            metrics.add(name, values)
        return LossOutput(per.float().sum(), metrics, tokens)

    def evaluate(self, model: nn.Module) -> MetricSums | None:
        if self.eval_data is None:
            return None
        data = self.eval_data
        mine = self.session.shard_index(len(data))
        size = max(1, self.train.batch_size // (self.session.world * self.train.grad_accum))
        out = MetricSums()
        for start in range(0, len(mine), size):
            rows = mine[start:start + size]
            per, extra, _ = self._rows_loss(model, data, rows)
            out.add("loss", per)
            for name, values in extra.items():
                out.add(name, values)
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"losses": self.losses.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.losses.load_state_dict(state["losses"])


def ratings_pair_accuracy(model: OrdinalRewardModel, data: RatingData, *, batch_size: int = 64) -> dict[str, Any]:
    """Pair accuracy of the reward on every within-list pair of ``data`` with different ratings."""
    better, worse = within_list_pairs(data)
    if len(better) == 0:
        return {"pair_accuracy": None, "pairs": 0}
    scores = model.score(data.prompts, data.completions, batch_size=batch_size)
    right = scores[better] > scores[worse]
    return {"pair_accuracy": float(right.float().mean()), "pairs": len(better)}


@dataclass
class TrainedOrdinalModel:
    model: OrdinalRewardModel
    metrics: dict[str, Any]
    history: list[dict[str, Any]]
    losses: LossHistory
    data: RatingData


def ratings_texts(records: Sequence[RatingsRecord | RatingRecord]) -> list[str]:
    texts: list[str] = []
    for prompt, completion, *_ in flatten_ratings(records):
        for value in (prompt, completion):
            texts.extend([value] if isinstance(value, str) else [m["content"] for m in value])
    return texts


def train_ordinal_model(
    cfg: RunConfig,
    *,
    ratings: Sequence[RatingsRecord | RatingRecord] | None = None,
    eval_ratings: Sequence[RatingsRecord | RatingRecord] | None = None,
    resume: bool = False,
    progress: bool | None = False,
    save: bool = True,
    allow_config_change: Sequence[str] = (),
) -> TrainedOrdinalModel:
    """Train an ordinal reward model on ``ratings`` (or the ratings file ``cfg.data.path``) and write
    ``cfg.out`` as ``rm train`` does: ``config.yaml``, ``metrics.jsonl``, ``metrics.json``,
    ``checkpoints/``, ``model/`` and ``training_dynamics.jsonl`` (each rated completion's mean loss)."""
    from prefkit.data import check_batch_size, read_options, read_pairs
    from prefkit.data.ratings import detect_feedback_kind, read_ratings
    from prefkit.preference.evaluation import evaluate_pairs
    from prefkit.preference.io import save_preference_model

    if cfg.rm.kind != "ordinal":
        raise ValueError(f"train_ordinal_model trains rm.kind=ordinal, got {cfg.rm.kind}")
    low, high = rating_scale(cfg.rm.scale or "")
    levels = high - low + 1
    options = read_options(cfg.data)
    options.pop("max_row_bytes", None)
    require_plain_file(cfg, "rm.kind=ordinal (a ratings file)")
    session = RunSession.start(cfg, resume=resume, allow_config_change=allow_config_change)
    try:
        report = None
        if ratings is None:
            if cfg.data.path is None:
                raise InputError("no training data: pass --data FILE (ratings)", field="data.path")
            if detect_feedback_kind(cfg.data.path) not in ("ratings", "rating"):
                raise InputError("rm.kind=ordinal trains on ratings (prompt/completions/ratings or "
                                 "prompt/completion/rating); this file holds other feedback (for pairs use "
                                 "--kind bt, gpm or pairpm)", file=cfg.data.path, field="data.path")
            ratings, report = read_ratings(cfg.data.path, scale=(low, high), integer=True, **options)
        eval_pairs = None
        if eval_ratings is None and cfg.data.eval_path:
            if detect_feedback_kind(cfg.data.eval_path) in ("ratings", "rating"):
                eval_ratings, _ = read_ratings(cfg.data.eval_path, scale=(low, high), integer=True, **options)
            else:
                eval_pairs, _ = read_pairs(cfg.data.eval_path, **read_options(cfg.data))
        setup = time.perf_counter()
        texts = ratings_texts(ratings)
        model = build_preference_model(cfg, [], session.device, texts=texts)
        if not isinstance(model, OrdinalRewardModel):  # pragma: no cover - build_model makes one
            raise TypeError(f"expected an ordinal model, got {type(model).__name__}")
        data = rating_data(model.backbone, ratings, low=low, levels=levels)
        truncated = check_rating_lengths(model.backbone, data, truncation=cfg.train.truncation)
        session.resolve_epochs(len(data))
        cfg = session.cfg
        check_batch_size(cfg.train.batch_size, len(data), what="rated completions", file=cfg.data.path)
        held_out = rating_data(model.backbone, eval_ratings, low=low, levels=levels) if eval_ratings else None
        setup_s = time.perf_counter() - setup
        shape = OrdinalShape(session, model, data, variant=cfg.rm.ordinal_variant, label="rm:ordinal",
                             eval_data=held_out)

        def evaluate(step: int) -> dict[str, Any]:
            if eval_pairs is not None:
                return evaluate_pairs(model, eval_pairs)
            return ratings_pair_accuracy(model, held_out) if held_out is not None else {}

        model.train()
        fit = session.fit(shape, model, evaluate=evaluate if (held_out is not None or eval_pairs) else None,
                          progress=progress)
        model.eval()

        def write() -> None:
            if not save:
                return
            save_preference_model(model, session.out / "model", extra={
                "data": cfg.data.path, "rated_completions": len(data), "steps": fit.state.step, "seed": cfg.seed,
                "scale": [low, high], "variant": cfg.rm.ordinal_variant})
            mean = shape.losses.mean()
            rows = [json.dumps({"line": source[1] if source else None, "field": name, "mean_loss": float(mean[i]),
                                "visits": int(shape.losses.count[i])})
                    for i, (source, name) in enumerate(zip(data.sources, data.fields))]
            atomic_write_text(session.out / "training_dynamics.jsonl", "".join(r + "\n" for r in rows))

        session.on_main(write)
        summary = {
            "kind": "ordinal",
            "steps": fit.state.step,
            "final_loss": fit.last_metrics.get("loss"),
            "train_accuracy": fit.last_metrics.get("ordinal/accuracy"),
            "train_mae": fit.last_metrics.get("ordinal/mae"),
            "rated_completions": len(data),
            "levels": levels,
            "scale": [low, high],
            "variant": cfg.rm.ordinal_variant,
            "truncated_rows": truncated,
            "skipped_rows": len(report.skipped) if report is not None else 0,
            "tokens": fit.state.tokens,
            "wall_s": fit.state.wall_s,
            "setup_s": setup_s,
            "processes": session.world,
            **lora_summary(model.backbone.model),
            **{k: v for k, v in fit.last_metrics.items() if k.startswith("eval/")},
        }
        summary = session.finish(summary) if save else summary
    finally:
        session.close()
    return TrainedOrdinalModel(model, summary, fit.history, shape.losses, data)


register_kind_run("ordinal", KindRun(train_ordinal_model, feedback="ratings",
                                     call="prefkit.engine.preference.ordinal.train_ordinal_model(cfg, ratings=...)"))
