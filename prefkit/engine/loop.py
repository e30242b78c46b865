"""The one training loop: every offline method, SFT, and (through ``online``) every online one.

``train(cfg)`` resolves the method, loads data and models, and runs optimizer steps. It alone
owns device placement, precision, gradient accumulation, loss normalisation, clipping,
checkpoints, metrics and ``--resume``. Data order is a pure function of ``(seed, step)``, so a
resumed run sees exactly the batches an uninterrupted one would have seen.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from prefkit.config import RunConfig, save_yaml, to_dict
from prefkit.data import ListRecord, PairRecord
from prefkit.engine import checkpoint as ckpt
from prefkit.engine.examples import tokenize_lists, tokenize_pairs, tokenize_sequences
from prefkit.engine.methods import Method, get_method
from prefkit.engine.metrics import MetricsLogger, progress_bar
from prefkit.engine.optim import build_optimizer, set_lr
from prefkit.engine.refcache import reference_logps
from prefkit.engine.steps import (
    StepContext,
    listwise_step,
    pairwise_step,
    resolve_loss,
    sft_step,
)
from prefkit.errors import InputError, NonFiniteLossError
from prefkit.policy import Policy, resolve_device

CHECKPOINTS = "checkpoints"


@dataclass
class TrainData:
    """What a run trains on; whichever the method's step shape needs must be present."""

    pairs: Sequence[PairRecord] | None = None
    lists: Sequence[ListRecord] | None = None
    sequences: Sequence[tuple[Any, Any]] | None = None
    """(prompt, response) for SFT; built from pairs' chosen responses when absent."""
    prompts: Sequence[Any] | None = None
    """Prompts for online methods."""
    sources: Sequence[Any] | None = None
    report: Any = None

    def texts(self) -> list[str]:
        """Every string in the data (to fit the tiny preset's tokenizer)."""
        out: list[str] = []

        def add(value: Any) -> None:
            if isinstance(value, str):
                out.append(value)
            elif isinstance(value, list):
                out.extend(m["content"] for m in value)

        for r in self.pairs or ():
            add(r.prompt), add(r.chosen), add(r.rejected)
        for r in self.lists or ():
            add(r.prompt)
            for resp in r.responses:
                add(resp)
        for p, resp in self.sequences or ():
            add(p), add(resp)
        for p in self.prompts or ():
            add(p)
        return out


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def load_train_data(cfg: RunConfig, method: Method) -> TrainData:
    """Read ``cfg.data.path`` in the shape the method needs."""
    from prefkit.data import read_lists, read_pairs, read_prompts, train_source

    if cfg.data.path is None:
        raise InputError("no training data: pass --data FILE", field="data.path")
    path = train_source(cfg.data)
    if method.step == "listwise":
        records, report = read_lists(path, skip_invalid=cfg.data.skip_invalid)
        return TrainData(lists=records, report=report)
    if method.step == "online":
        prompts, report = read_prompts(path, skip_invalid=cfg.data.skip_invalid)
        return TrainData(prompts=prompts, report=report)
    records, report = read_pairs(path, skip_invalid=cfg.data.skip_invalid)
    if method.step == "sft":
        return TrainData(
            sequences=[(r.prompt, r.chosen) for r in records],
            sources=[r.source for r in records],
            report=report,
        )
    return TrainData(pairs=records, report=report)


def build_policy(cfg: RunConfig, data: TrainData, device: torch.device) -> Policy:
    dtype = "bf16" if cfg.train.precision == "bf16" and device.type == "cuda" else None
    if cfg.model == "tiny":
        texts = data.texts()
        if not texts:
            raise InputError("the tiny preset fits its tokenizer on the data, and the data has no text")
        return Policy.tiny(texts, cfg.tiny, seed=cfg.seed, device=device)
    return Policy.load(cfg.model, device=device, dtype=dtype, trust_remote_code=cfg.trust_remote_code)


def frozen_copy(policy: Policy) -> Policy:
    """A frozen reference: same tokenizer, a deep copy of the weights, eval mode."""
    model = copy.deepcopy(policy.model).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return Policy(model, policy.tokenizer)


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=g)


def batch_indices(n: int, batch_size: int, step: int, seed: int, shuffle: bool) -> list[int]:
    """Example indices of optimizer step ``step``: a pure function of (seed, step)."""
    out = []
    start = step * batch_size
    while len(out) < batch_size:
        epoch, offset = divmod(start + len(out), n)
        order = epoch_order(n, seed, epoch) if shuffle else torch.arange(n)
        take = min(batch_size - len(out), n - offset)
        out.extend(order[offset : offset + take].tolist())
    return out


def _autocast_factory(precision: str, device: torch.device) -> Callable[[], contextlib.AbstractContextManager]:
    if precision == "bf16":
        return lambda: torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext


def _check_resume(saved: dict[str, Any], cfg: RunConfig) -> None:
    now = to_dict(cfg)
    diffs = []
    for section, values in now.items():
        if isinstance(values, dict):
            for key, value in values.items():
                if (section, key) in (("train", "steps"), ("train", "save_every"), ("train", "eval_every")):
                    continue
                if saved.get(section, {}).get(key) != value:
                    diffs.append(f"{section}.{key}: {saved.get(section, {}).get(key)!r} -> {value!r}")
        elif saved.get(section) != values and section not in ("out",):
            diffs.append(f"{section}: {saved.get(section)!r} -> {values!r}")
    if diffs:
        raise InputError(
            "--resume with a different configuration than the checkpoint's: " + "; ".join(diffs),
            field="config",
        )


@dataclass
class TrainResult:
    """What a finished run reports (also written to ``metrics.json``)."""

    policy: Policy
    metrics: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)


StepFn = Callable[[int, torch.optim.Optimizer], tuple[dict[str, float], int]]
"""``step_fn(step, optimizer) -> (metrics, tokens)``: one optimizer step's forward and backward
passes (gradients accumulated on the model); ``metrics["loss"]`` is required. The loop then
clips, steps the optimizer and logs. An extragradient method may take inner optimizer steps
itself, as long as it leaves the model at the point whose gradient the loop should apply."""


def start_run(cfg: RunConfig, resume: bool) -> tuple[Path, Path | None]:
    """What every run does first: the output directory and the checkpoint to resume from
    (:func:`check_out_dir`), the thread count, and the seeds."""
    out = Path(cfg.out)
    latest = check_out_dir(out, resume)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    seed_everything(cfg.seed)
    return out, latest


def check_out_dir(out: Path, resume: bool) -> Path | None:
    """The checkpoint to resume from (``None`` for a fresh run); refuses to overwrite a run."""
    ckpt_root = out / CHECKPOINTS
    latest = ckpt.latest_checkpoint(ckpt_root)
    if resume and latest is None:
        raise InputError(f"--resume: no checkpoint under {ckpt_root}", field="out")
    if not resume and latest is not None:
        raise InputError(
            f"{out} already holds a run; pass --resume to continue it or choose another --out",
            field="out",
        )
    return latest


@dataclass
class LoopResult:
    state: ckpt.TrainState
    history: list[dict[str, Any]]
    last_metrics: dict[str, Any]


def optimize(
    cfg: RunConfig,
    *,
    model: torch.nn.Module,
    step_fn: StepFn,
    label: str,
    resume_from: Path | None = None,
    progress: bool | None = None,
    evaluate: Callable[[int], dict[str, Any]] | None = None,
    extra_state: Callable[[], dict[str, Any]] | None = None,
    restore_extra: Callable[[dict[str, Any]], None] | None = None,
    param_lr: Callable[[str], float] | None = None,
) -> LoopResult:
    """The optimisation loop shared by every step shape.

    Owns the learning-rate schedule, clipping, the optimizer step, the non-finite check,
    metrics (``metrics.jsonl``, TensorBoard), periodic evaluation, atomic checkpoints and exact
    resume. ``extra_state``/``restore_extra`` let a step shape checkpoint small JSON state of
    its own (for example an online method's query counter). ``param_lr(name)`` gives a
    parameter its own base learning rate (default ``cfg.train.lr``).
    """
    out = Path(cfg.out)
    ckpt_root = out / CHECKPOINTS
    optimizer = build_optimizer(model.named_parameters(), cfg.train, lr_of=param_lr)
    state = ckpt.TrainState()
    config_dict = to_dict(cfg)
    if resume_from is not None:
        state, saved_config = ckpt.load_checkpoint(resume_from, model=model, optimizer=optimizer)
        _check_resume(saved_config, cfg)
        if restore_extra is not None and state.extra:
            restore_extra(state.extra)
    out.mkdir(parents=True, exist_ok=True)
    save_yaml(cfg, out / "config.yaml")
    logger = MetricsLogger(out, resume_step=state.step if resume_from is not None else None)
    history: list[dict[str, Any]] = []
    last_metrics: dict[str, Any] = {}
    loop_start = time.perf_counter()
    wall_before = state.wall_s
    eval_s = 0.0  # evaluation is not training: kept out of wall_s (and so out of tokens/s)
    bar = progress_bar(cfg.train.steps, label, enabled=progress)
    try:
        with bar:
            task = bar.add_task(label, total=cfg.train.steps, completed=state.step, status="")
            while state.step < cfg.train.steps:
                step = state.step
                lr = set_lr(optimizer, step, cfg.train)
                metrics, tokens = step_fn(step, optimizer)
                step_loss = metrics.get("loss", float("nan"))
                if not math.isfinite(step_loss):
                    optimizer.zero_grad(set_to_none=True)
                    kept = ckpt.latest_checkpoint(ckpt_root)
                    raise NonFiniteLossError(
                        f"step {step + 1}: the loss is {step_loss}; stopped. "
                        + (f"The last good checkpoint is kept at {kept}." if kept else "No checkpoint was written yet.")
                    )
                grad_norm = None
                if cfg.train.max_grad_norm is not None:
                    grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.max_grad_norm))
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                state.step += 1
                state.tokens += tokens
                state.wall_s = wall_before + (time.perf_counter() - loop_start) - eval_s
                metrics = {**metrics, "lr": lr, "tokens": state.tokens}
                if grad_norm is not None:
                    metrics["grad_norm"] = grad_norm
                last_metrics = metrics
                bar.update(task, completed=state.step, status=f"loss {step_loss:.4f}")
                is_last = state.step == cfg.train.steps
                if state.step % max(1, cfg.train.log_every) == 0 or is_last:
                    logger.log(state.step, metrics)
                    history.append({"step": state.step, **metrics})
                if evaluate is not None and (
                    is_last or (cfg.train.eval_every and state.step % cfg.train.eval_every == 0)
                ):
                    eval_start = time.perf_counter()
                    scores = {f"eval/{k}": v for k, v in evaluate(state.step).items()}
                    eval_s += time.perf_counter() - eval_start
                    logger.log(state.step, scores)
                    last_metrics.update(scores)
                if is_last or (cfg.train.save_every and state.step % cfg.train.save_every == 0):
                    state.extra = extra_state() if extra_state is not None else None
                    ckpt.save_checkpoint(ckpt_root, model=model, optimizer=optimizer, scheduler=None,
                                         state=state, config=config_dict)
    finally:
        logger.close()
    return LoopResult(state, history, last_metrics)


def train(
    cfg: RunConfig,
    *,
    data: TrainData | None = None,
    policy: Policy | None = None,
    reference: Policy | None = None,
    resume: bool = False,
    progress: bool | None = None,
    evaluate: Callable[[Policy, Policy | None, int], dict[str, Any]] | None = None,
) -> TrainResult:
    """Run ``cfg.method`` for ``cfg.train.steps`` optimizer steps and write everything to ``cfg.out``.

    ``data``/``policy``/``reference`` may be given in memory (the demo does); otherwise they come
    from ``cfg.data.path``, ``cfg.model`` and ``cfg.ref_model``. ``evaluate(policy, reference,
    step)`` is called every ``train.eval_every`` steps and at the end; its numbers are logged.
    """
    method = get_method(cfg.method)
    reference_given = reference is not None
    if method.step == "online":
        from prefkit.engine.online import train_online

        return train_online(cfg, method, data=data, policy=policy, reference=reference, resume=resume,
                            progress=progress, evaluate=evaluate)
    out, latest = start_run(cfg, resume)
    device = resolve_device(cfg.train.device)
    loss = resolve_loss(method, cfg.loss)
    data = data or load_train_data(cfg, method)
    setup_start = time.perf_counter()
    policy = policy or build_policy(cfg, data, device)
    policy.model.train()
    if cfg.train.gradient_checkpointing:
        policy.model.gradient_checkpointing_enable()

    if method.step == "sft":
        sequences = data.sequences or [(r.prompt, r.chosen) for r in data.pairs or ()]
        sources = data.sources or [getattr(r, "source", None) for r in data.pairs or ()] or None
        examples = tokenize_sequences(policy, [p for p, _ in sequences], [r for _, r in sequences], cfg.train, sources)
    elif method.step == "pairwise":
        if not data.pairs:
            raise InputError(f"method {method.name} needs pairs (prompt/chosen/rejected)")
        examples = tokenize_pairs(policy, data.pairs, cfg.train)
    else:
        if not data.lists:
            raise InputError(f"method {method.name} needs ranked lists (prompt/responses/scores)")
        examples = tokenize_lists(policy, data.lists, cfg.train)
    cfg = dataclasses.replace(cfg, train=cfg.train.steps_for(len(examples)))  # train.epochs -> steps

    ref_logps, cache_hit, ref_s = None, False, 0.0
    needs_reference = loss is not None and loss.spec.needs_reference
    if needs_reference:
        if reference is None:
            reference = (
                Policy.load(cfg.ref_model, device=device, trust_remote_code=cfg.trust_remote_code)
                if cfg.ref_model
                else frozen_copy(policy)
            )
        t0 = time.perf_counter()
        ref_logps, cache_hit = reference_logps(examples, reference, cfg.train)
        ref_s = time.perf_counter() - t0
    if evaluate is not None and reference is None:
        reference = frozen_copy(policy)
    setup_s = time.perf_counter() - setup_start

    autocast = _autocast_factory(cfg.train.precision, device)

    def step_fn(step: int, optimizer: torch.optim.Optimizer) -> tuple[dict[str, float], int]:
        ctx = StepContext(policy, cfg.train, autocast, device)
        index = batch_indices(len(examples), cfg.train.batch_size, step, cfg.seed, cfg.train.shuffle)
        if method.step == "sft":
            sft_step(ctx, examples, index)
        elif method.step == "pairwise":
            pairwise_step(ctx, loss, examples, ref_logps, index)
        else:
            listwise_step(ctx, loss, examples, ref_logps, index)
        return ctx.metrics, ctx.tokens

    run = optimize(
        cfg,
        model=policy.model,
        step_fn=step_fn,
        label=method.name,
        resume_from=latest,
        progress=progress,
        evaluate=(lambda step: evaluate(policy, reference, step)) if evaluate is not None else None,
    )
    policy.save(out / "policy")
    if reference is not None and not cfg.ref_model and (cfg.model == "tiny" or reference_given):
        reference.save(out / "reference")  # not loadable from a path otherwise (prefkit eval uses it)
    summary = {
        "method": method.name,
        "steps": run.state.step,
        "final_loss": run.last_metrics.get("loss"),
        "tokens": run.state.tokens,
        "wall_s": run.state.wall_s,
        "tokens_per_s": run.state.tokens / run.state.wall_s if run.state.wall_s > 0 else None,
        "setup_s": setup_s,
        "ref_logps_s": ref_s,
        "ref_cache_hit": cache_hit,
        "truncated_rows": examples.truncated,
        "examples": len(examples),
        **{k: v for k, v in run.last_metrics.items() if k.startswith("eval/")},
    }
    (out / "metrics.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return TrainResult(policy=policy, metrics=summary, history=run.history)
