"""Preference-model runs (``prefkit rm train``): data, model, the step shape, the driver."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from prefkit._atomic import atomic_directory, atomic_write_text
from prefkit.config import RunConfig
from prefkit.config.schema import rating_scale
from prefkit.data.records import PairRecord
from prefkit.engine.models import lora_summary, prepare_for_training
from prefkit.engine.preference.data import PairData, pair_data, read_strength_column
from prefkit.engine.preference.kinds import KIND_RUNS
from prefkit.engine.preference.shape import LossHistory, PreferenceShape
from prefkit.engine.run import RunSession
from prefkit.errors import InputError
from prefkit.policy.lora import apply_lora, is_lora, quantization_config, save_adapter, save_plain
from prefkit.preference.backbone import (
    check_lengths,
    load_backbone,
    quiet_transformers,
    tiny_backbone,
)
from prefkit.preference.heads import build_head
from prefkit.preference.models import NeuralPreferenceModel, build_model
from prefkit.preference.seqcls import reward_model_for_training, uses_standard_format


@dataclass
class FitResult:
    history: list[dict[str, Any]]
    last_metrics: dict[str, Any]
    losses: LossHistory
    steps: int
    tokens: int
    wall_s: float


def fit(
    cfg: RunConfig,
    model: NeuralPreferenceModel,
    data: PairData,
    *,
    session: RunSession | None = None,
    resume: bool = False,
    progress: bool | None = False,
    evaluate: Callable[[int], dict[str, Any]] | None = None,
) -> FitResult:
    """Train ``model`` on ``data`` for ``cfg.train.steps`` optimizer steps through the driver
    (outputs in ``cfg.out``: ``config.yaml``, ``metrics.jsonl``, ``checkpoints/``). Without a
    ``session`` one is opened (and closed) for ``cfg``."""
    own = session is None
    session = session or RunSession.start(cfg, resume=resume)
    try:
        shape = PreferenceShape(session, model, data, cfg.rm, label=f"rm:{cfg.rm.kind}")
        model.train()
        result = session.fit(shape, model, evaluate=evaluate, progress=progress,
                             lr_scale=head_lr_scale(session.cfg, model))
        model.eval()
    finally:
        if own:
            session.close()
    return FitResult(result.history, result.last_metrics, shape.losses, result.state.step, result.state.tokens,
                     result.state.wall_s)


def build_preference_model(cfg: RunConfig, records: Sequence[PairRecord], device: torch.device, *,
                           texts: Sequence[str] | None = None) -> NeuralPreferenceModel:
    """``cfg.model`` (``tiny`` or a local Hugging Face directory) with the ``cfg.rm`` head.

    The tiny preset's tokenizer is fitted on the records' texts (or on ``texts`` when given: the
    ordinal model's ratings); weights (backbone and head) are initialised from ``cfg.seed``.
    """
    rm = cfg.rm
    if cfg.lora.enabled and rm.freeze_backbone:
        raise InputError("lora.r > 0 trains adapters on the backbone and rm.freeze_backbone=true freezes it (a "
                         "head-only probe): choose one", field="lora.r")
    quantization = quantization_config(cfg.lora, torch.device(device), cfg.train.precision)
    if not cfg.lora.enabled and uses_standard_format(cfg.model, rm, trust_remote_code=cfg.trust_remote_code):
        return reward_model_for_training(cfg.model, texts if texts is not None else _record_texts(records), cfg.tiny,
                                         seed=cfg.seed, max_length=cfg.train.max_length, dropout=rm.dropout,
                                         freeze_backbone=rm.freeze_backbone, device=device,
                                         trust_remote_code=cfg.trust_remote_code)
    if cfg.model == "tiny":
        if quantization is not None:
            raise InputError("lora.quantize loads a checkpoint directory quantized, and the tiny preset is built "
                             "in memory: give --model DIR, or lora.quantize=none", field="lora.quantize")
        backbone = tiny_backbone(texts if texts is not None else _record_texts(records), cfg.tiny, seed=cfg.seed, pooling=rm.pooling, max_length=cfg.train.max_length,
                                 device=device)
    else:
        backbone = load_backbone(cfg.model, kind=rm.backbone, pooling=rm.pooling, max_length=cfg.train.max_length,
                                 device=device, trust_remote_code=cfg.trust_remote_code,
                                 quantization_config=quantization)
    if rm.freeze_backbone:
        backbone.freeze_body()
    if cfg.lora.enabled:  # adapters on the backbone; the head below trains fully
        compute = torch.bfloat16 if cfg.train.precision == "bf16" else torch.float32
        backbone.model = apply_lora(backbone.model, cfg.lora, task_type="FEATURE_EXTRACTION", seed=cfg.seed,
                                    quantized=quantization is not None, compute_dtype=compute)
    prepare_for_training(cfg, backbone.model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        levels = 5
        if rm.kind == "ordinal":
            low, high = rating_scale(rm.scale or "")
            levels = high - low + 1
        head = build_head(rm.kind, backbone.hidden_size, dim=rm.dim, tau=rm.tau, normalize=rm.normalize,
                          eigenvalues=rm.eigenvalues, dropout=rm.dropout, levels=levels)
    if quantization is not None:  # the quantized backbone is already placed (bitsandbytes weights are not moved)
        return build_model(rm.kind, backbone, head.to(device))
    return build_model(rm.kind, backbone, head).to(device)


def _record_texts(records: Sequence[PairRecord]) -> list[str]:
    """Every text of the pairs (the tiny preset fits its tokenizer on them); only the tiny preset
    reads them."""
    texts: list[str] = []
    for r in records:
        for value in (r.prompt, r.chosen, r.rejected):
            texts.extend([value] if isinstance(value, str) else [m["content"] for m in value])
    return texts


def head_lr_scale(cfg: RunConfig, model: NeuralPreferenceModel) -> Callable[[str], float]:
    """A preference model's parameter -> multiplier on ``train.lr``: ``rm.head_lr / train.lr``
    for the head (the parameters under ``model.head_prefixes``), 1 for the backbone."""
    scale = cfg.rm.head_lr / cfg.train.lr if cfg.rm.head_lr is not None else 1.0
    prefixes = model.head_prefixes
    return lambda name: scale if name.startswith(prefixes) else 1.0


def save_backbone_adapter(cfg: RunConfig, out: Path, model: NeuralPreferenceModel) -> None:
    """A LoRA preference model's extra outputs: ``out/adapter`` (the backbone's PEFT adapter;
    ``model/`` already holds the merged backbone and the head) and, for the tiny preset, its base
    backbone as ``out/base`` (otherwise the base is ``cfg.model``)."""
    backbone = model.backbone
    if cfg.model != "tiny":
        base = Path(cfg.model)
    else:
        base = out / "base"
        with atomic_directory(base) as staging, quiet_transformers():
            save_plain(backbone.model, staging, merge=False)
            backbone.tokenizer.save_pretrained(staging)
    with quiet_transformers():
        save_adapter(backbone.model, out / "adapter", base_model=str(base.resolve()))


@dataclass
class TrainedPreferenceModel:
    model: NeuralPreferenceModel
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
    allow_config_change: Sequence[str] = (),
) -> TrainedPreferenceModel:
    """Train a ``cfg.rm.kind`` model on ``records`` (or ``cfg.data.path``) and write ``cfg.out``:
    ``config.yaml``, ``metrics.jsonl``, ``metrics.json``, ``checkpoints/``, ``model/`` (the saved
    preference model, docs/preference.md) and ``training_dynamics.jsonl`` (each pair's mean
    training loss)."""
    from prefkit.data import check_batch_size, eval_source, read_options, read_pairs, train_source
    from prefkit.preference.evaluation import evaluate_pairs
    from prefkit.preference.io import save_preference_model

    if cfg.rm.kind in KIND_RUNS:  # ordinal: ratings
        kind_run = KIND_RUNS[cfg.rm.kind]
        if records is not None or eval_records is not None:
            raise ValueError(f"rm.kind={cfg.rm.kind} trains on {kind_run.feedback}: call {kind_run.call}, or give "
                             f"the {kind_run.feedback} file as data.path")
        return kind_run.run(cfg, resume=resume, progress=progress, save=save,
                            allow_config_change=allow_config_change)
    if cfg.data.unpair:
        raise InputError("data.unpair splits pairs for the unpaired policy methods (kto, bco_unpaired, "
                         "apo_zero_unpaired); a preference model trains on the pairs themselves: remove data.unpair",
                         field="data.unpair")
    session = RunSession.start(cfg, resume=resume, allow_config_change=allow_config_change)
    try:
        report = None
        if records is None:
            if cfg.data.path is None:
                raise InputError("no training data: pass --data FILE", field="data.path")
            records, report = read_pairs(train_source(cfg.data), **read_options(cfg.data))
        held_out = eval_source(cfg.data) if eval_records is None else None
        if held_out is not None:
            eval_records, _ = read_pairs(held_out, **read_options(cfg.data))
        strength = None
        if cfg.rm.adaptive_margin:
            if cfg.data.path is None or cfg.data.split is not None or cfg.data.columns:
                raise InputError("rm.adaptive_margin reads strength_mean from the lines of a --data JSONL or Parquet "
                                 "file (no data.split, no data.columns)", field="data.path")
            strength = read_strength_column(cfg.data.path, records)
        setup = time.perf_counter()
        model = build_preference_model(cfg, records, session.device)
        check_lengths(model.backbone, records, pairwise=cfg.rm.kind == "pairpm", truncation=cfg.train.truncation)
        data = pair_data(model.backbone, records, cfg.rm, strength=strength)
        session.resolve_epochs(len(data))
        cfg = session.cfg
        check_batch_size(cfg.train.batch_size, len(data), what="pairs", file=cfg.data.path)
        setup_s = time.perf_counter() - setup
        evaluate = (lambda step: evaluate_pairs(model, eval_records)) if eval_records else None
        result = fit(cfg, model, data, session=session, progress=progress, evaluate=evaluate)

        def write() -> None:
            if not save:
                return
            save_preference_model(model, session.out / "model", extra={"data": cfg.data.path, "pairs": len(data),
                                                                         "steps": result.steps, "seed": cfg.seed})
            if is_lora(model.backbone.model):
                save_backbone_adapter(cfg, session.out, model)
            mean = result.losses.mean()
            rows = [json.dumps({"line": source[1] if source else None, "mean_loss": float(mean[i]),
                                "visits": int(result.losses.count[i])}) for i, source in enumerate(data.sources)]
            atomic_write_text(session.out / "training_dynamics.jsonl", "".join(r + "\n" for r in rows))

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
            "processes": session.world,
            **lora_summary(model.backbone.model),
            **{k: v for k, v in result.last_metrics.items() if k.startswith("eval/")},
        }
        session.on_main(write)
        summary = session.finish(summary) if save else summary
    finally:
        session.close()
    return TrainedPreferenceModel(model, summary, result.history, result.losses, data)
