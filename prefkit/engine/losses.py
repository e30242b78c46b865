"""The loss a method minimises: a registry loss with its keyword arguments checked and resolved."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from prefkit.config import LossConfig
from prefkit.engine.methods import KL_INPUTS, STEP_INPUTS, TAIL_INPUTS, WPO_INPUTS, Method
from prefkit.losses import LOSSES, LossSpec, combined_spec

__all__ = ["ENGINE_FED", "KL_INPUTS", "TAIL_INPUTS", "WPO_INPUTS", "ResolvedLoss", "resolve_loss", "symmetrised"]

ENGINE_FED = frozenset({"chosen_lengths", "rejected_lengths", "mask", "lengths", "kl"})
"""Keyword arguments the engine fills from the batch (never set by ``loss.params``)."""


@dataclass
class ResolvedLoss:
    """The loss a method minimises, with its keyword arguments checked against the signature."""

    spec: LossSpec
    kwargs: dict[str, Any]
    beta: float
    """The strength used for the implicit-reward metrics (``rewards/*``)."""
    nll_weight: float = 0.0


def resolve_loss(method: Method, cfg: LossConfig) -> ResolvedLoss | None:
    """Turn a method and the ``loss`` config section into a callable loss, or fail clearly."""
    if method.step == "sft":
        return None
    name = cfg.name or method.loss
    if cfg.weights:
        spec = combined_spec(dict(cfg.weights), cfg.nll_weight + method.nll_weight)
        kwargs: dict[str, Any] = {**cfg.params}
        if cfg.beta is not None:
            kwargs["beta"] = cfg.beta
        return ResolvedLoss(spec, kwargs, beta=cfg.beta if cfg.beta is not None else 0.1)
    if name not in LOSSES:
        raise ValueError(f"loss.name: unknown loss {name!r} (known: {', '.join(sorted(LOSSES))})")
    spec = LOSSES[name]
    if method.step in STEP_INPUTS and spec.kind != method.step:
        raise ValueError(f"loss.name={name}: a {spec.kind} loss, and --method {method.name} trains on the "
                         f"{method.step} step; choose a {method.step} loss (docs/methods.md)")
    missing = [i for i in spec.inputs if i not in STEP_INPUTS.get(method.step, frozenset())]
    if missing:
        raise ValueError(f"loss.name={name}: needs {', '.join(missing)}, which the {method.step} step does not "
                         "compute (docs/methods.md, 'Losses that need more than the standard step computes')")
    params = {**method.loss_params, **cfg.params}
    signature = inspect.signature(spec.fn).parameters
    keyword_only = {n for n, p in signature.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}
    settable = keyword_only - ENGINE_FED - set(spec.inputs)
    for key in params:
        if key not in settable:
            raise ValueError(
                f"loss.params.{key}: {name} has no such setting (it takes: {', '.join(sorted(settable)) or 'none'})"
            )
    if spec.strength_arg is not None and cfg.beta is not None:
        if cfg.beta <= 0:
            raise ValueError(f"loss.beta must be positive, got {cfg.beta}")
        params[spec.strength_arg] = cfg.beta
    strength = params.get(spec.strength_arg) if spec.strength_arg else None
    if strength is None and spec.strength_arg:
        strength = spec.defaults.get(spec.strength_arg)
    beta = float(strength) if strength is not None else 1.0
    if spec.strength_arg == "tau":
        beta = 1.0 / beta
    return ResolvedLoss(spec, params, beta=beta, nll_weight=cfg.nll_weight + method.nll_weight)


def symmetrised(fn: Callable[..., torch.Tensor], labels: torch.Tensor, c: torch.Tensor, r: torch.Tensor,
                rc: torch.Tensor | None, rr: torch.Tensor | None, kwargs: dict[str, Any]) -> torch.Tensor:
    """Soft label p = P(chosen beats rejected): ``p L(c, r) + (1 - p) L(r, c)`` for any pairwise
    loss (equals the loss itself for hard labels p = 1; a tie p = 1/2 pulls to indifference)."""
    forward = fn(c, r, rc, rr, **kwargs)
    if bool((labels == 1).all()):
        return forward
    swapped_kwargs = {_swapped(key): value for key, value in kwargs.items()}
    backward = fn(r, c, rr, rc, **swapped_kwargs)
    return labels * forward + (1 - labels) * backward


def _swapped(key: str) -> str:
    """A per-response keyword's name with chosen and rejected exchanged (``chosen_lengths`` <->
    ``rejected_lengths``, ``ref_chosen_tail_logps`` <-> ``ref_rejected_tail_logps``)."""
    if "chosen_" in key:
        return key.replace("chosen_", "rejected_", 1)
    if "rejected_" in key:
        return key.replace("rejected_", "chosen_", 1)
    return key
