"""Atomic checkpoints: model and optimizer tensors in safetensors, everything else in JSON.

Nothing is pickled, so loading a checkpoint never executes code. A checkpoint is a directory
``step-XXXXXXXX`` staged as ``.tmp-step-XXXXXXXX`` and renamed into place; ``latest`` is a small
text file replaced atomically after the directory exists, so a run killed at any moment leaves
either the previous checkpoint or the new one, never a half-written one.

Layout: ``model.safetensors`` and ``optimizer.safetensors`` (written by the main process: under
data parallelism every rank holds the same weights and optimizer state), ``state.json`` (step,
tokens, wall time, world size, the resolved config and the optimizer's JSON metadata), and per
rank ``rank-R.safetensors`` + ``rank-R.json`` (that rank's random-number generators and its
step shape's own state, e.g. an online round's samples).
"""

from __future__ import annotations

import json
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from prefkit._atomic import atomic_write_text
from prefkit.engine.rundir import KEEP_CHECKPOINTS, LATEST, RunDirectoryError, prune_checkpoints

STATE = "state.json"


@dataclass
class TrainState:
    """What a resumed run needs beyond the weights: where it was and what it had seen."""

    step: int = 0
    tokens: int = 0
    wall_s: float = 0.0


def flatten_optimizer(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split ``optimizer.state_dict()`` into tensors (for safetensors) and JSON metadata."""
    tensors: dict[str, torch.Tensor] = {}
    meta_state: dict[str, dict[str, Any]] = {}
    for param_id, param_state in state["state"].items():
        entry: dict[str, Any] = {}
        for key, value in param_state.items():
            if torch.is_tensor(value):
                name = f"state.{param_id}.{key}"
                tensors[name] = value.detach().contiguous().cpu()
                entry[key] = {"tensor": name}
            else:
                entry[key] = {"value": value}
        meta_state[str(param_id)] = entry
    return tensors, {"state": meta_state, "param_groups": state["param_groups"]}


def unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for param_id, entry in meta["state"].items():
        state[int(param_id)] = {
            key: tensors[v["tensor"]] if "tensor" in v else v["value"] for key, v in entry.items()
        }
    return {"state": state, "param_groups": meta["param_groups"]}


def rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Every random-number generator's state: torch (CPU and CUDA), numpy and Python."""
    tensors = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"torch_cuda_{i}"] = s
    np_state = np.random.get_state()
    version, internal, gauss = random.getstate()
    meta = {
        "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
        "python": [version, list(internal), gauss],
    }
    return tensors, meta


def set_rng_state(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    torch.set_rng_state(tensors["torch_cpu"])
    cuda = [tensors[k] for k in sorted(tensors) if k.startswith("torch_cuda_")]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    kind, keys, pos, has_gauss, cached = meta["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    version, internal, gauss = meta["python"]
    random.setstate((version, tuple(internal), gauss))


def dedupe_shared(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """safetensors refuses tensors sharing memory (tied embeddings): store each storage once."""
    seen: set[tuple[int, int, tuple[int, ...]]] = set()
    out = {}
    for name, tensor in weights.items():
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape))
        out[name] = tensor.clone() if key in seen else tensor
        seen.add(key)
    return out


def staging_dir(root: Path, step: int) -> Path:
    """Where the checkpoint of ``step`` is written before it is renamed into place."""
    return root / f".tmp-step-{step:08d}"


def write_rank_state(staging: Path, rank: int, shape_state: dict[str, Any] | None) -> None:
    """This rank's generators and step-shape state (every rank calls it)."""
    tensors, meta = rng_state()
    save_file(tensors, staging / f"rank-{rank}.safetensors")
    (staging / f"rank-{rank}.json").write_text(json.dumps({"rng": meta, "shape": shape_state}), encoding="utf-8")


def write_main_state(
    staging: Path,
    *,
    weights: dict[str, torch.Tensor] | None,
    optimizer: dict[str, Any] | None,
    state: TrainState,
    config: dict[str, Any],
    world_size: int,
    extra: dict[str, Any] | None = None,
) -> None:
    """Weights, optimizer and ``state.json`` (the main process calls it, last)."""
    meta: dict[str, Any] = {
        "state": {"step": state.step, "tokens": state.tokens, "wall_s": state.wall_s},
        "world_size": world_size,
        "config": config,
        **(extra or {}),
    }
    if weights is not None:
        save_file(dedupe_shared({k: v.detach().contiguous().cpu() for k, v in weights.items()}),
                  staging / "model.safetensors")
    if optimizer is not None:
        tensors, opt_meta = flatten_optimizer(optimizer)
        save_file(tensors, staging / "optimizer.safetensors")
        meta["optimizer"] = opt_meta
    (staging / STATE).write_text(json.dumps(meta), encoding="utf-8")


def commit(root: Path, staging: Path, step: int, *, keep: int = KEEP_CHECKPOINTS) -> Path:
    """Rename the staged checkpoint into place, point ``latest`` at it, prune older ones."""
    final = root / f"step-{step:08d}"
    if os.path.lexists(final):
        if final.is_symlink() or not final.is_dir():
            final.unlink()
        else:
            shutil.rmtree(final)
    os.replace(staging, final)
    atomic_write_text(root / LATEST, final.name)
    prune_checkpoints(root, keep=keep)
    return final


@dataclass
class Checkpoint:
    """A checkpoint read back: the train state, the saved config and this rank's shape state."""

    path: Path
    state: TrainState
    config: dict[str, Any]
    world_size: int
    meta: dict[str, Any]

    def load_weights(self, model: torch.nn.Module) -> None:
        weights = load_file(self.path / "model.safetensors")
        missing, unexpected = model.load_state_dict(weights, strict=False)
        real_missing = [k for k in missing if not _is_tied_alias(model, k)]
        if real_missing or unexpected:
            raise RunDirectoryError(
                f"{self.path}: checkpoint does not match the model (missing {real_missing[:5]}, "
                f"unexpected {unexpected[:5]})"
            )

    def load_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        if "optimizer" in self.meta:
            tensors = load_file(self.path / "optimizer.safetensors")
            optimizer.load_state_dict(unflatten_optimizer(tensors, self.meta["optimizer"]))

    def restore_rank(self, rank: int) -> dict[str, Any] | None:
        """Restore this rank's generators; return its step shape's saved state."""
        saved = json.loads((self.path / f"rank-{rank}.json").read_text(encoding="utf-8"))
        set_rng_state(load_file(self.path / f"rank-{rank}.safetensors"), saved["rng"])
        return saved["shape"]


def read_checkpoint(path: str | Path) -> Checkpoint:
    path = Path(path)
    meta = json.loads((path / STATE).read_text(encoding="utf-8"))
    s = meta["state"]
    state = TrainState(step=int(s["step"]), tokens=int(s["tokens"]), wall_s=float(s["wall_s"]))
    return Checkpoint(path, state, meta["config"], int(meta.get("world_size", 1)), meta)


def _is_tied_alias(model: torch.nn.Module, key: str) -> bool:
    tied = getattr(model, "_tied_weights_keys", None) or []
    if isinstance(tied, dict):
        tied = list(tied)
    return key in tied

