"""The one run driver: every training run in prefkit goes through :class:`RunSession`.

``RunSession.start(cfg, resume=...)`` opens a run: the accelerate ``Accelerator`` (one process,
or every rank of ``accelerate launch`` / ``torchrun``), the output directory (checked, locked,
its resume point), threads and seeds. ``session.fit(shape, model)`` then alone owns the
optimisation: micro-batching and gradient accumulation, loss normalisation, backward, clipping,
the optimizer and its schedule, the non-finite stop, metrics and trackers, evaluation, atomic
checkpoints and exact ``--resume``. ``session.finish(summary)`` writes ``metrics.json``.

A *step shape* (:class:`StepShape`: offline pairs, lists and SFT; online sample -> judge ->
update; preference models) only computes losses. For each optimizer step it returns this rank's
micro-batches, each declaring its ``units`` (examples, response tokens or rows: the loss
normaliser) before its forward; for each micro-batch it returns the summed loss, metric sums
and tokens. It never sees the optimizer.

Loss normalisation: the driver sums ``units`` over every micro-batch of every rank and
back-propagates ``loss_sum / global_units`` (times the world size, since data parallelism
averages gradients over ranks), so N processes at one global batch give one process's gradient.
``train.batch_size`` is the global batch; each rank takes a contiguous slice of it.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import errno
import math
import os
import random
import shutil
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn

from prefkit._atomic import atomic_write_json
from prefkit.config import RunConfig, save_yaml, to_dict
from prefkit.engine import checkpoint as ckpt
from prefkit.engine.metrics import MetricsLogger, MetricSums, plain, progress_bar
from prefkit.engine.optim import LrScale, build_optimizer, set_lr
from prefkit.engine.rundir import (
    CHECKPOINTS,
    RunDir,
    RunDirectoryError,
    latest_checkpoint,
    open_run_dir,
)
from prefkit.engine.trackers import Trackers, check_trackers
from prefkit.errors import InputError, NonFiniteLossError
from prefkit.policy import check_device

T = TypeVar("T")

FREE_ON_RESUME = frozenset({"train.steps", "train.save_every", "train.eval_every", "train.log_every",
                            "train.threads", "train.report_to", "out"})
"""Keys a resumed run may always change (they do not change what the finished steps computed)."""

CHANGEABLE_ON_RESUME = frozenset({"train.lr", "train.weight_decay", "train.adam_beta1", "train.adam_beta2",
                                  "train.adam_eps", "train.schedule", "train.warmup_steps",
                                  "train.max_grad_norm"})
"""Optimisation keys a resumed run may change when asked (``--allow-config-change KEY``); the
change is recorded in ``metrics.json`` (``config_changes``)."""

PATH_KEYS = frozenset({"data.path", "data.eval_path", "model", "ref_model", "online.answers"})


# ----------------------------------------------------------------------------- step shapes

@dataclass
class MicroBatch:
    """One forward/backward of a step: ``units`` is its share of the loss normaliser; ``data``
    is whatever the step shape needs (opaque to the driver)."""

    units: float
    data: Any


@dataclass
class LossOutput:
    """A micro-batch's result: ``loss`` is the SUM over its units of the (weighted) loss, a
    scalar with gradients; ``metrics`` are sums and counts; ``tokens`` counts the forward's
    non-padding tokens."""

    loss: torch.Tensor
    metrics: MetricSums = field(default_factory=MetricSums)
    tokens: int = 0


class StepShape:
    """What a step shape provides (defaults for the optional parts).

    ``micro_batches(step)`` returns this rank's micro-batches of optimizer step ``step`` (a pure
    function of the seed, the step and the shape's checkpointed state); ``loss(model, micro)``
    computes one of them through ``model`` (the wrapped training module: call it, do not reach
    around it, so data parallelism sees the forward).
    """

    label: str = ""
    extragradient: bool = False
    """EGPO: the driver takes a half step, calls :meth:`refresh`, restores the parameters and
    the optimizer state, and applies the gradient of the refreshed loss."""
    fixed_micro_batches: bool = True
    """Every step has exactly ``train.grad_accum`` equal micro-batches on every rank (DeepSpeed,
    which fixes its micro-batch size and accumulation at start, needs it)."""

    def micro_batches(self, step: int) -> list[MicroBatch]:
        raise NotImplementedError

    def loss(self, model: nn.Module, micro: MicroBatch) -> LossOutput:
        raise NotImplementedError

    def empty_loss(self, model: nn.Module) -> LossOutput:
        """A zero loss through ``model``, for a rank with no rows in a step where others have
        some (data parallelism needs every rank's backward)."""
        raise NotImplementedError(f"{type(self).__name__} cannot run a step with no rows on a rank")

    def refresh(self, step: int) -> None:
        """EGPO: recompute the step's targets at the half-step parameters."""

    def counters(self) -> dict[str, float]:
        """Cumulative additive counters of this rank (summed over ranks when logged)."""
        return {}

    def derived(self, counters: dict[str, float]) -> dict[str, float]:
        """Metrics computed from the summed counters (e.g. ratios)."""
        return {}

    def state_dict(self) -> dict[str, Any] | None:
        return None

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    def evaluate(self, model: nn.Module) -> MetricSums | None:
        """Held-out metrics of this rank's share of the evaluation data (``eval/`` names)."""
        return None


@dataclass
class FitResult:
    """What ``RunSession.fit`` reports."""

    state: ckpt.TrainState
    history: list[dict[str, Any]]
    last_metrics: dict[str, Any]
    config_changes: list[dict[str, Any]]

    def summary(self, method: str) -> dict[str, Any]:
        """The keys every run's ``metrics.json`` starts with: method, steps, final loss, tokens,
        wall time and throughput."""
        wall = self.state.wall_s
        return {"method": method, "steps": self.state.step, "final_loss": self.last_metrics.get("loss"),
                "tokens": self.state.tokens, "wall_s": wall,
                "tokens_per_s": self.state.tokens / wall if wall > 0 else None}


@dataclass
class TrainResult:
    """What a finished run reports (``metrics`` is also written to ``metrics.json``)."""

    policy: Any
    metrics: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)


# ----------------------------------------------------------------------------- launch checks

def launched_rank() -> int:
    """This process's rank under ``torchrun``/``accelerate launch`` (0 for a single process)."""
    return int(os.environ.get("RANK", "0") or 0)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def make_accelerator(device: str) -> Any:
    """The process's ``Accelerator`` (mixed precision is the driver's own autocast, so the
    accelerate state never pins it)."""
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs

    cpu = device == "cpu" or (device == "auto" and not torch.cuda.is_available())
    return Accelerator(cpu=cpu, kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=False)])


def check_launch(accelerator: Any, cfg: RunConfig) -> None:
    """Refuse launches the driver cannot honour, before any data is read."""
    from accelerate.utils import DistributedType

    kind = accelerator.distributed_type
    world = accelerator.num_processes
    launched = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if launched > 1 and world != launched:
        raise InputError(f"launched with WORLD_SIZE={launched} but accelerate sees {world} process(es); "
                         "launch with `accelerate launch` or `torchrun` so every rank joins one process group",
                         field="train.device")
    if world > 1 and ":" in cfg.train.device:
        raise InputError(f"train.device={cfg.train.device!r} pins one device, but {world} processes were "
                         "launched: use train.device=auto (each rank takes its own device)", field="train.device")
    for engine, wanted in (("FSDP", DistributedType.FSDP), ("DEEPSPEED", DistributedType.DEEPSPEED)):
        if os.environ.get(f"ACCELERATE_USE_{engine}", "false").lower() in ("1", "true") and kind != wanted:
            raise InputError(f"the accelerate config asks for {wanted.value}, but accelerate runs it only on GPUs "
                             f"and would silently fall back to {kind.value}; use a DDP config on this machine",
                             field="accelerate config")
    mixed = str(accelerator.mixed_precision)
    if mixed not in ("no", "None") and mixed != cfg.train.precision:
        raise InputError(f"the accelerate config asks for mixed_precision={mixed} but train.precision="
                         f"{cfg.train.precision}; set train.precision={mixed} (or drop it from the accelerate "
                         "config)", field="train.precision")
    if kind in (DistributedType.FSDP, DistributedType.DEEPSPEED):
        warnings.warn(f"{kind.value}: prefkit's sharded path (accelerate's {kind.value} engine, sharded "
                      "checkpoints through accelerate's save_state) has not been run on GPUs yet; the DDP path is "
                      "the tested one (docs/scaling.md)", stacklevel=2)
    if kind == DistributedType.DEEPSPEED and cfg.train.max_grad_norm is None:
        raise InputError("DeepSpeed clips inside its engine: set train.max_grad_norm (DeepSpeed's "
                         "gradient_clipping) instead of null", field="train.max_grad_norm")


def _normalised(section: str, key: str, value: Any) -> Any:
    name = f"{section}.{key}" if key else section
    if name in PATH_KEYS and isinstance(value, str) and value != "tiny" and not value.startswith(("llm:", "studio:")):
        path = Path(value)
        if path.exists():
            return str(path.resolve())
    return value


def config_diffs(saved: dict[str, Any], now: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """``(key, saved, now)`` for every setting that differs (paths compared after resolution)."""
    diffs = []
    for section, values in now.items():
        if isinstance(values, dict):
            before = saved.get(section, {}) or {}
            for key, value in values.items():
                old = before.get(key)
                if _normalised(section, key, old) != _normalised(section, key, value):
                    diffs.append((f"{section}.{key}", old, value))
        elif _normalised(section, "", saved.get(section)) != _normalised(section, "", values):
            diffs.append((section, saved.get(section), values))
    return diffs


# ----------------------------------------------------------------------------- the session

class RunSession:
    """One run of one process (see the module docstring)."""

    def __init__(self, cfg: RunConfig, accelerator: Any, rundir: RunDir | None, resume_from: Path | None,
                 checkpoint: ckpt.Checkpoint | None, config_changes: list[dict[str, Any]]) -> None:
        self.cfg = cfg
        self.accelerator = accelerator
        self.rundir = rundir
        self.out = Path(cfg.out).absolute()
        self.resume_from = resume_from
        self.checkpoint = checkpoint
        self.config_changes = config_changes
        self.rank = int(accelerator.process_index)
        self.world = int(accelerator.num_processes)
        self.is_main = bool(accelerator.is_main_process)
        self.device = self._device()
        self.trackers: Trackers | None = None
        self.state_dict: dict[str, torch.Tensor] | None = None
        """After ``fit`` under FSDP/DeepSpeed: the full (gathered) weights, on the main process."""
        self.closed = False

    # -- opening ---------------------------------------------------------------------------------

    @classmethod
    def start(cls, cfg: RunConfig, *, resume: bool = False, allow_config_change: Sequence[str] = ()) -> RunSession:
        """Open the run: accelerator, launch checks, output directory (main process: lock,
        checks, orphan clean-up), resume point, threads, seeds."""
        check_device(cfg.train.device)
        check_trackers(cfg.train.report_to)
        for key in allow_config_change:
            if key not in CHANGEABLE_ON_RESUME:
                raise InputError(f"--allow-config-change {key}: only optimisation keys may change on resume "
                                 f"({', '.join(sorted(CHANGEABLE_ON_RESUME))})", field="config")
        accelerator = make_accelerator(cfg.train.device)
        check_launch(accelerator, cfg)
        rundir = None
        error: tuple[str, str | None] | None = None
        if accelerator.is_main_process:
            try:
                rundir = open_run_dir(cfg.out, resume=resume)
            except InputError as err:
                error = (err.reason, err.field)
        if accelerator.num_processes > 1:
            from accelerate.utils import broadcast_object_list

            message = [error]
            broadcast_object_list(message, from_process=0)
            error = message[0]
        if error is not None:
            raise InputError(error[0], field=error[1])
        try:
            resume_from = rundir.resume_from if rundir is not None else latest_checkpoint(Path(cfg.out) / CHECKPOINTS)
            checkpoint, changes = None, []
            if resume_from is not None:
                checkpoint = ckpt.read_checkpoint(resume_from)
                if checkpoint.world_size != accelerator.num_processes:
                    raise InputError(f"{resume_from} was written by {checkpoint.world_size} process(es) and this "
                                     f"run has {accelerator.num_processes}: resume with the same world size",
                                     field="out")
                changes = _resume_changes(checkpoint, cfg, allow_config_change)
            if cfg.train.threads:
                torch.set_num_threads(cfg.train.threads)
            seed_everything(cfg.seed)
        except BaseException:
            if rundir is not None:
                rundir.release()
            raise
        return cls(cfg, accelerator, rundir, resume_from, checkpoint, changes)

    def resolve_epochs(self, examples: int) -> None:
        """Turn ``train.epochs`` into optimizer steps for ``examples`` training examples
        (``TrainConfig.steps_for``); ``config.yaml`` keeps the epochs, so a resume on the same
        data gets the same steps."""
        self.cfg = dataclasses.replace(self.cfg, train=self.cfg.train.steps_for(examples))

    def _device(self) -> torch.device:
        if self.world > 1 or self.cfg.train.device == "auto":
            return torch.device(self.accelerator.device)
        return torch.device(self.cfg.train.device)

    # -- collective helpers ------------------------------------------------------------------------

    def barrier(self) -> None:
        if self.world > 1:
            self.accelerator.wait_for_everyone()

    def gather_objects(self, value: T) -> list[T]:
        if self.world == 1:
            return [value]
        from accelerate.utils import gather_object

        return gather_object([value])

    def broadcast(self, value: T) -> T:
        """``value`` of the main process, on every rank."""
        if self.world == 1:
            return value
        from accelerate.utils import broadcast_object_list

        box = [value]
        broadcast_object_list(box, from_process=0)
        return box[0]

    def all_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Elementwise sum over ranks (returned on the tensor's device)."""
        if self.world == 1:
            return tensor
        return self.accelerator.reduce(tensor.to(self.accelerator.device), reduction="sum").to(tensor.device)

    def shard(self, items: Sequence[T]) -> list[T]:
        """This rank's contiguous slice of ``items``; ``len(items)`` must divide by the world size."""
        items = list(items)
        if len(items) % self.world:
            raise InputError(f"{len(items)} items cannot be split evenly over {self.world} processes")
        size = len(items) // self.world
        return items[self.rank * size:(self.rank + 1) * size]

    def shard_index(self, n: int) -> list[int]:
        """Indices ``rank, rank + W, ...`` of ``n`` items (an uneven split is fine)."""
        return list(range(self.rank, n, self.world))

    def on_main(self, fn: Callable[[], T]) -> T | None:
        """Run ``fn`` on the main process only; every rank waits for it."""
        out = fn() if self.is_main else None
        self.barrier()
        return out

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        """bf16 autocast when ``train.precision=bf16`` (on any device), else nothing."""
        if self.cfg.train.precision == "bf16":
            with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16):
                yield
        else:
            yield

    @property
    def model_dtype(self) -> str | None:
        """The dtype to load weights in: bf16 weights on CUDA with ``train.precision=bf16``."""
        return "bf16" if self.cfg.train.precision == "bf16" and self.device.type == "cuda" else None

    @property
    def distributed_type(self) -> str:
        return str(self.accelerator.distributed_type.value)

    @property
    def sharded(self) -> bool:
        """FSDP or DeepSpeed: weights, gradients or optimizer state live in shards."""
        return self.distributed_type in ("FSDP", "DEEPSPEED")

    @property
    def deepspeed(self) -> bool:
        return self.distributed_type == "DEEPSPEED"

    def require_batch(self, global_size: int, key: str, *, micro: int = 1) -> int:
        """This rank's share of a global batch of ``global_size``; refuses sizes that do not split."""
        if global_size % (self.world * micro):
            raise InputError(f"{key}={global_size} must be divisible by the number of processes ({self.world})"
                             + (f" times train.grad_accum ({micro})" if micro > 1 else ""), field=key)
        return global_size // self.world

    # -- the optimisation loop -------------------------------------------------------------------

    def fit(self, shape: StepShape, model: nn.Module, *, label: str | None = None,
            evaluate: Callable[[int], dict[str, Any]] | None = None, progress: bool | None = None,
            lr_scale: LrScale | None = None) -> FitResult:
        """Run optimizer steps until ``train.steps`` (see the module docstring).

        ``evaluate(step)`` (a world evaluation) runs on the main process every ``train.eval_every``
        steps and at the end; ``shape.evaluate`` (held-out data) on every rank's share.
        ``lr_scale(name)`` is a parameter's multiplier on ``train.lr`` (see ``build_optimizer``).
        """
        cfg, train = self.cfg, self.cfg.train
        label = label or shape.label
        optimizer = build_optimizer(model.named_parameters(), train, lr_scale)
        state = ckpt.TrainState()
        last_metrics: dict[str, Any] = {}
        if self.checkpoint is not None and not self.sharded:
            self.checkpoint.load_weights(model)
            self.checkpoint.load_optimizer(optimizer)
        if self.checkpoint is not None:
            state = self.checkpoint.state
            last_metrics = dict(self.checkpoint.meta.get("last_metrics") or {})
        if self.deepspeed:
            self._configure_deepspeed(shape)
        wrapped, optimizer = self.accelerator.prepare(model, optimizer, device_placement=[False, False])
        if self.checkpoint is not None and self.sharded:
            self.accelerator.load_state(str(self.checkpoint.path / "accelerate"))
        if self.checkpoint is not None:
            shape_state = self.checkpoint.restore_rank(self.rank)
            if shape_state is not None:
                shape.load_state_dict(shape_state)
        elif self.world > 1:
            torch.manual_seed(cfg.seed * 1_000_003 + 7_919 * self.rank)  # dropout differs per rank
        config_dict = to_dict(cfg)
        logger = None
        if self.is_main:
            save_yaml(cfg, self.out / "config.yaml")
            if train.report_to and any(n != "none" for n in train.report_to):
                self.trackers = Trackers(train.report_to, self.out, self.out.name, config_dict)
            logger = MetricsLogger(self.out, resume_step=state.step if self.checkpoint is not None else None,
                                   trackers=self.trackers)
        history: list[dict[str, Any]] = []
        loop_start, wall_before, eval_s = time.perf_counter(), state.wall_s, 0.0
        bar = progress_bar(train.steps, label, enabled=progress if self.is_main else False)
        try:
            with bar:
                task = bar.add_task(label, total=train.steps, completed=state.step, status="")
                while state.step < train.steps:
                    step = state.step
                    lr = set_lr(optimizer, step, train)
                    loss, metrics, tokens, grad_norm = self.gradients(shape, wrapped, optimizer, step)
                    if not (math.isfinite(loss) and math.isfinite(grad_norm)):
                        optimizer.zero_grad(set_to_none=True)
                        what = f"the loss is {loss}" if not math.isfinite(loss) else f"the gradient norm is {grad_norm}"
                        raise NonFiniteLossError(f"step {step + 1}: {what}; stopped before updating. "
                                                 + self._kept_message())
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
                    state.step += 1
                    state.tokens += tokens
                    state.wall_s = wall_before + (time.perf_counter() - loop_start) - eval_s
                    metrics = {**metrics, "lr": lr, "tokens": state.tokens, "grad_norm": grad_norm}
                    last_metrics = {k: v for k, v in last_metrics.items() if k.startswith("eval/")} | metrics
                    bar.update(task, completed=state.step, status=f"loss {loss:.4f}")
                    is_last = state.step == train.steps
                    if logger is not None and (state.step % max(1, train.log_every) == 0 or is_last):
                        logger.log(state.step, metrics)
                    if state.step % max(1, train.log_every) == 0 or is_last:
                        history.append({"step": state.step, **metrics})
                    if is_last or (train.eval_every and state.step % train.eval_every == 0):
                        began = time.perf_counter()
                        scores = self._evaluate(shape, wrapped, evaluate, state.step)
                        eval_s += time.perf_counter() - began
                        if scores:
                            if logger is not None:
                                logger.log(state.step, scores)
                            last_metrics.update(scores)
                    if (is_last and train.final_checkpoint) or (train.save_every and state.step % train.save_every == 0):
                        self._save(model, optimizer, shape, state, config_dict, last_metrics)
        finally:
            if logger is not None:
                logger.close()
        self.state_dict = self.accelerator.get_state_dict(wrapped) if self.sharded else None
        return FitResult(state, history, last_metrics, self.config_changes)

    def _configure_deepspeed(self, shape: StepShape) -> None:
        """DeepSpeed fixes the micro-batch size, the accumulation and the clipping at start."""
        train = self.cfg.train
        if not shape.fixed_micro_batches:
            raise InputError(f"{shape.label} builds a varying number of rows per step (online sampling), which "
                             "DeepSpeed's fixed micro-batching cannot take: use DDP or FSDP for online methods",
                             field="accelerate config")
        config = self.accelerator.state.deepspeed_plugin.deepspeed_config
        config["train_batch_size"] = train.batch_size
        config["train_micro_batch_size_per_gpu"] = train.batch_size // (self.world * train.grad_accum)
        config["gradient_accumulation_steps"] = train.grad_accum
        config["gradient_clipping"] = train.max_grad_norm
        self.accelerator.gradient_accumulation_steps = train.grad_accum

    def gradients(self, shape: StepShape, model: nn.Module, optimizer: Any,
                  step: int) -> tuple[float, dict[str, float], int, float]:
        """The gradient of optimizer step ``step`` left on ``model`` (EGPO: after its half step),
        with the step's loss, metrics, tokens and gradient norm; the caller steps the optimizer."""
        micro = shape.micro_batches(step)
        if shape.extragradient:
            self._half_step(shape, model, optimizer, micro, step)
        return self._forward_backward(shape, model, micro)

    def _forward_backward(self, shape: StepShape, model: nn.Module,
                          micro: list[MicroBatch]) -> tuple[float, dict[str, float], int, float]:
        """Every micro-batch's forward and backward; returns the step's loss, metrics, tokens and
        gradient norm (after clipping to ``train.max_grad_norm``), all reduced over ranks."""
        local_units = float(sum(m.units for m in micro))
        units = float(self.all_sum(torch.tensor([local_units], dtype=torch.float64))[0])
        sums = MetricSums()
        loss_sum, tokens = 0.0, 0
        if units > 0:
            scale = self.world / units
            if self.deepspeed:
                scale *= self.cfg.train.grad_accum  # DeepSpeed divides by its accumulation steps itself
            jobs: list[MicroBatch | None] = list(micro) or [None]
            for i, job in enumerate(jobs):
                sync = i == len(jobs) - 1
                if self.deepspeed:
                    context = self.accelerator.accumulate(model)  # DeepSpeed steps at the boundary
                else:
                    context = contextlib.nullcontext() if sync else self.accelerator.no_sync(model)
                with context:
                    with self.autocast():
                        out = shape.loss(model, job) if job is not None else shape.empty_loss(model)
                    self.accelerator.backward(out.loss.float() * scale)
                loss_sum += float(out.loss.detach())
                tokens += out.tokens
                sums.merge(out.metrics)
        counters = shape.counters()
        if self.world > 1:
            gathered = self.gather_objects({"sums": sums.to_json(), "loss": loss_sum, "tokens": tokens,
                                            "counters": counters})
            sums, loss_sum, tokens, counters = MetricSums(), 0.0, 0, {}
            for part in gathered:
                sums.merge(MetricSums.from_json(part["sums"]))
                loss_sum += part["loss"]
                tokens += part["tokens"]
                for key, value in part["counters"].items():
                    counters[key] = counters.get(key, 0.0) + value
        max_norm = self.cfg.train.max_grad_norm
        grad_norm = self.accelerator.clip_grad_norm_(model.parameters(), max_norm if max_norm is not None else math.inf)
        grad_norm = float(grad_norm) if grad_norm is not None else 0.0
        metrics = {"loss": loss_sum / units if units > 0 else 0.0, **sums.means(), **counters,
                   **shape.derived(counters)}
        return metrics["loss"], metrics, tokens, grad_norm

    def _half_step(self, shape: StepShape, model: nn.Module, optimizer: Any, micro: list[MicroBatch],
                   step: int) -> None:
        """EGPO's extragradient half step (Zhou, Fazel & Du 2025): a step to theta_{t+1/2},
        refreshed targets there, then parameters and optimizer state back to theta_t."""
        inner = self.accelerator.unwrap_model(model)
        saved_params = [p.detach().clone() for p in inner.parameters()]
        saved_optimizer = copy.deepcopy(optimizer.state_dict())
        loss, _, _, grad_norm = self._forward_backward(shape, model, micro)
        if math.isfinite(loss) and math.isfinite(grad_norm):
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        shape.refresh(step)
        with torch.no_grad():
            for p, saved in zip(inner.parameters(), saved_params):
                p.copy_(saved)
        optimizer.load_state_dict(saved_optimizer)

    def _evaluate(self, shape: StepShape, model: nn.Module, evaluate: Callable[[int], dict[str, Any]] | None,
                  step: int) -> dict[str, Any]:
        scores: dict[str, Any] = {}
        inner = self.accelerator.unwrap_model(model)
        was_training = inner.training
        inner.eval()
        try:
            with torch.no_grad(), self.autocast():
                held_out = shape.evaluate(model)
        finally:
            inner.train(was_training)
        if held_out is not None or self.world > 1:
            parts = self.gather_objects(held_out.to_json() if held_out is not None else {})
            merged = MetricSums()
            for part in parts:
                merged.merge(MetricSums.from_json(part))
            scores.update({f"eval/{k}": v for k, v in merged.means().items()})
        if evaluate is not None:
            world_scores = evaluate(step) if self.is_main else None
            scores.update({f"eval/{k}": v for k, v in (self.broadcast(world_scores) or {}).items()})
        return scores

    def _kept_message(self) -> str:
        kept = latest_checkpoint(self.out / CHECKPOINTS)
        if kept is None:
            return "No checkpoint was written yet."
        step = int(kept.name.split("-")[1])
        return (f"The last finite checkpoint (step {step}) is kept at {kept}; resume from it with --resume, "
                "e.g. with a lower train.lr and --allow-config-change train.lr.")

    def _save(self, model: nn.Module, optimizer: Any, shape: StepShape, state: ckpt.TrainState,
              config: dict[str, Any], last_metrics: dict[str, Any]) -> None:
        """An atomic checkpoint of this step, after checking the parameters are finite."""
        finite = torch.tensor([float(self.deepspeed or all_finite(model))])  # DeepSpeed: by its grad norm
        if float(self.all_sum(finite)[0]) < self.world:
            raise NonFiniteLossError(f"step {state.step}: the parameters are no longer finite (the update "
                                     "diverged); no checkpoint written for this step. " + self._kept_message())
        root = self.out / CHECKPOINTS
        staging = ckpt.staging_dir(root, state.step)
        try:
            if self.is_main:
                root.mkdir(exist_ok=True)
                if os.path.lexists(staging):
                    shutil.rmtree(staging) if staging.is_dir() and not staging.is_symlink() else staging.unlink()
                staging.mkdir()
            self.barrier()
            ckpt.write_rank_state(staging, self.rank, shape.state_dict())
            if self.sharded:
                self.accelerator.save_state(str(staging / "accelerate"))
            self.barrier()
            if self.is_main:
                ckpt.write_main_state(
                    staging, weights=None if self.sharded else self.accelerator.unwrap_model(model).state_dict(),
                    optimizer=None if self.sharded else optimizer.state_dict(), state=state, config=config,
                    world_size=self.world,
                    extra={"last_metrics": {k: plain(v) for k, v in last_metrics.items()},
                           "config_changes": self.config_changes},
                )
                ckpt.commit(root, staging, state.step)
            self.barrier()
        except OSError as err:
            if self.is_main:
                shutil.rmtree(staging, ignore_errors=True)
            full = err.errno in (errno.ENOSPC, errno.EDQUOT)
            kept = latest_checkpoint(root)
            raise RunDirectoryError(
                f"{'disk full' if full else err.strerror or err} while writing the checkpoint of step "
                f"{state.step} under {root}; "
                + (f"the previous checkpoint {kept} is intact (--resume continues from it)" if kept
                   else "no earlier checkpoint exists")
            ) from None

    # -- closing ---------------------------------------------------------------------------------

    def finish(self, summary: dict[str, Any]) -> dict[str, Any]:
        """Write ``metrics.json`` (main process) and close the run."""
        summary = {k: plain(v) for k, v in summary.items()}
        if self.config_changes:
            summary["config_changes"] = self.config_changes
        if self.is_main:
            atomic_write_json(self.out / "metrics.json", summary)
            self._write_model_cards(summary)
        self.close()
        return summary

    def _write_model_cards(self, summary: dict[str, Any]) -> None:
        """A ``README.md`` model card (``prefkit.cards``) in each saved model directory of the run:
        ``policy/`` and a preference model's ``model/``."""
        from prefkit.cards import write_model_card

        for name, role in (("policy", "policy"), ("model", "preference_model")):
            if (self.out / name).is_dir():
                write_model_card(self.out / name, self.cfg, summary, role=role)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.trackers is not None:
            self.trackers.finish()
        self.barrier()
        if self.rundir is not None:
            self.rundir.release()


def all_finite(model: nn.Module) -> bool:
    """Whether every parameter (this rank's shard, under FSDP) is finite (fused norms)."""
    params = [getattr(p, "to_local", lambda p=p: p)().detach() for p in model.parameters() if p.is_floating_point()]
    params = [p for p in params if p.numel()]
    if not params:
        return True
    norms = torch._foreach_norm(params)
    return bool(torch.isfinite(torch.stack([n.float() for n in norms])).all())


def _resume_changes(checkpoint: ckpt.Checkpoint, cfg: RunConfig, allowed: Sequence[str]) -> list[dict[str, Any]]:
    changes = list(checkpoint.meta.get("config_changes") or [])
    refused = []
    for key, old, new in config_diffs(checkpoint.config, to_dict(cfg)):
        if key in FREE_ON_RESUME:
            continue
        if key in allowed:
            changes.append({"step": checkpoint.state.step, "key": key, "from": old, "to": new})
        else:
            refused.append(f"{key}: {old!r} -> {new!r}")
    if refused:
        hint = (" (optimisation keys may change with --allow-config-change KEY)"
                if any(r.split(":")[0] in CHANGEABLE_ON_RESUME for r in refused) else "")
        raise InputError("--resume with a different configuration than the checkpoint's: " + "; ".join(refused)
                         + hint, field="config")
    return changes
