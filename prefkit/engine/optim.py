"""AdamW with decoupled weight decay (not on biases and norms) and a warmup schedule."""

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


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """Multiplier on ``cfg.lr`` at optimizer step ``step`` (0-based): linear warmup, then the schedule."""
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    span = max(1, cfg.steps - cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / span)
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
