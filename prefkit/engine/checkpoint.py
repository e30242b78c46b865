"""Atomic checkpoints: model and optimizer tensors in safetensors, everything else in JSON.

Nothing is pickled, so loading a checkpoint never executes code. A checkpoint is a directory
``step-XXXXXXXX`` written under a temporary name and renamed into place; ``latest`` is a small
text file replaced atomically after the directory exists, so a run killed at any moment leaves
either the previous checkpoint or the new one, never a half-written one.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from prefkit._atomic import atomic_write_text

LATEST = "latest"


@dataclass
class TrainState:
    """What a resumed run needs beyond the weights: where it was and what it had seen."""

    step: int = 0
    tokens: int = 0
    queries: int = 0
    wall_s: float = 0.0
    extra: dict[str, Any] | None = None


def _flatten_optimizer(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
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


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
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
    meta = {
        "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
        "python": _jsonable_python_state(random.getstate()),
    }
    return tensors, meta


def _jsonable_python_state(state: tuple) -> list:
    version, internal, gauss = state
    return [version, list(internal), gauss]


def set_rng_state(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    torch.set_rng_state(tensors["torch_cpu"])
    cuda = [tensors[k] for k in sorted(tensors) if k.startswith("torch_cuda_")]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    kind, keys, pos, has_gauss, cached = meta["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    version, internal, gauss = meta["python"]
    random.setstate((version, tuple(internal), gauss))


def save_checkpoint(
    root: str | Path,
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None,
    scheduler: Any | None,
    state: TrainState,
    config: dict[str, Any],
    keep: int = 2,
) -> Path:
    """Write ``root/step-XXXXXXXX`` atomically and point ``root/latest`` at it."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{state.step:08d}"
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=root))
    try:
        weights = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
        save_file(_dedupe_shared(weights), tmp / "model.safetensors")
        meta: dict[str, Any] = {
            "state": {
                "step": state.step,
                "tokens": state.tokens,
                "queries": state.queries,
                "wall_s": state.wall_s,
                "extra": state.extra,
            },
            "config": config,
        }
        if optimizer is not None:
            opt_tensors, opt_meta = _flatten_optimizer(optimizer.state_dict())
            save_file(opt_tensors, tmp / "optimizer.safetensors")
            meta["optimizer"] = opt_meta
        if scheduler is not None:
            meta["scheduler"] = scheduler.state_dict()
        rng_tensors, rng_meta = rng_state()
        save_file(rng_tensors, tmp / "rng.safetensors")
        meta["rng"] = rng_meta
        (tmp / "state.json").write_text(json.dumps(meta), encoding="utf-8")
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    atomic_write_text(root / LATEST, final.name)
    _prune(root, keep)
    return final


def _dedupe_shared(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """safetensors refuses tensors sharing memory (tied embeddings): store each storage once."""
    seen: dict[tuple[int, int, tuple[int, ...]], str] = {}
    out = {}
    for name, tensor in weights.items():
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape))
        out[name] = tensor.clone() if key in seen else tensor
        seen.setdefault(key, name)
    return out


def _prune(root: Path, keep: int) -> None:
    steps = sorted(p for p in root.glob("step-*") if p.is_dir())
    for old in steps[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)


def latest_checkpoint(root: str | Path) -> Path | None:
    """The checkpoint ``root/latest`` points at, or ``None`` when there is none."""
    root = Path(root)
    pointer = root / LATEST
    if not pointer.exists():
        return None
    path = root / pointer.read_text(encoding="utf-8").strip()
    return path if (path / "state.json").exists() else None


def load_checkpoint(
    path: str | Path,
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any | None = None,
    restore_rng: bool = True,
) -> tuple[TrainState, dict[str, Any]]:
    """Restore weights, optimizer, scheduler and RNG; return the train state and saved config."""
    path = Path(path)
    meta = json.loads((path / "state.json").read_text(encoding="utf-8"))
    weights = load_file(path / "model.safetensors")
    missing, unexpected = model.load_state_dict(weights, strict=False)
    real_missing = [k for k in missing if not _is_tied_alias(model, k)]
    if real_missing or unexpected:
        raise ValueError(
            f"{path}: checkpoint does not match the model (missing {real_missing[:5]}, "
            f"unexpected {unexpected[:5]})"
        )
    if optimizer is not None and "optimizer" in meta:
        tensors = load_file(path / "optimizer.safetensors")
        optimizer.load_state_dict(_unflatten_optimizer(tensors, meta["optimizer"]))
    if scheduler is not None and "scheduler" in meta:
        scheduler.load_state_dict(meta["scheduler"])
    if restore_rng:
        set_rng_state(load_file(path / "rng.safetensors"), meta["rng"])
    s = meta["state"]
    state = TrainState(
        step=s["step"], tokens=s["tokens"], queries=s["queries"], wall_s=s["wall_s"], extra=s["extra"]
    )
    return state, meta["config"]


def _is_tied_alias(model: torch.nn.Module, key: str) -> bool:
    tied = getattr(model, "_tied_weights_keys", None) or []
    if isinstance(tied, dict):
        tied = list(tied)
    return key in tied
