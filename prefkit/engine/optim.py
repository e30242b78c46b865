"""AdamW with decoupled weight decay (not on biases and norms) and a warmup schedule.

Parameters may have their own learning rates (``lr_of(name)``, e.g. a preference model's head
at ``rm.head_lr`` and its backbone at ``train.lr``): each group keeps its ``base_lr`` and the
schedule multiplies every group's base by the same factor.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch

from prefkit.config import TrainConfig

LrScale = Callable[[str], float]
"""``lr_scale(parameter name)``: the multiplier on ``train.lr`` for that parameter (e.g. a
preference model's head trained faster than its backbone)."""


def build_optimizer(named_params: Iterable[tuple[str, torch.nn.Parameter]], cfg: TrainConfig,
                    lr_scale: LrScale | None = None) -> torch.optim.AdamW:
    """AdamW over the trainable parameters, grouped by weight decay and learning-rate scale."""
    groups: dict[tuple[bool, float], list[torch.nn.Parameter]] = {}
    for name, param in named_params:
        if not param.requires_grad:
            continue
        decay = not (param.ndim < 2 or "norm" in name.lower())
        scale = float(lr_scale(name)) if lr_scale is not None else 1.0
        groups.setdefault((decay, scale), []).append(param)
    params = [p for group in groups.values() for p in group]
    if not params:
        raise ValueError("no trainable parameters: every parameter has requires_grad=False")
    fused = all(p.device.type in ("cpu", "cuda") and p.dtype.is_floating_point for p in params)
    return torch.optim.AdamW(
        [{"params": group, "weight_decay": cfg.weight_decay if decay else 0.0, "lr_scale": scale}
         for (decay, scale), group in groups.items()],
        lr=cfg.lr,
        betas=(cfg.adam_beta1, cfg.adam_beta2),
        eps=cfg.adam_eps,
        fused=fused or None,
    )


def warmup_steps(cfg: TrainConfig) -> int:
    """``warmup_steps``, or ``warmup_ratio`` of the run's steps (rounded)."""
    return cfg.warmup_steps or round(cfg.warmup_ratio * cfg.steps)


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """Multiplier on ``cfg.lr`` at optimizer step ``step`` (0-based): linear warmup, then the schedule."""
    warmup = warmup_steps(cfg)
    if warmup and step < warmup:
        return (step + 1) / warmup
    span = max(1, cfg.steps - warmup)
    progress = min(1.0, (step - warmup) / span)
    if cfg.schedule == "linear":
        return 1.0 - progress
    if cfg.schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return 1.0


def set_lr(optimizer: torch.optim.Optimizer, step: int, cfg: TrainConfig) -> float:
    """Set every group's learning rate for ``step`` (stateless, so resume needs nothing extra);
    returns the base rate."""
    lr = cfg.lr * lr_factor(step, cfg)
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
    return lr
