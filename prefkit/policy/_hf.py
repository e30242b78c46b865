"""Small adapters over Hugging Face model APIs that changed names across versions or wrappers."""

from __future__ import annotations

import inspect
from functools import cache

from torch import nn


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside ``DistributedDataParallel``/``DataParallel``/``torch.compile`` wrappers."""
    while True:
        if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module):
            model = model._orig_mod
        else:
            return model


def innermost(model: nn.Module) -> nn.Module:
    """The Hugging Face model under every wrapper: DDP/compile (``unwrap``), then adapter
    wrappers that pass their forward's keyword arguments through (PEFT's ``PeftModel``,
    ``prefkit.policy.lora.AdaptersOff``: whatever defines ``get_base_model``)."""
    model = unwrap(model)
    while callable(getattr(type(model), "get_base_model", None)):
        base = unwrap(model.get_base_model())
        if base is model:
            break
        model = base
    return model


@cache
def _names(model_type: type) -> tuple[str, str | None]:
    parameters = inspect.signature(model_type.forward).parameters
    cache_name = "cache" if "cache" in parameters else "past_key_values"
    keep = next((n for n in ("logits_to_keep", "num_logits_to_keep") if n in parameters), None)
    return cache_name, keep


def cache_argument(model: nn.Module) -> str:
    """``cache`` (transformers >= 5.x) or ``past_key_values`` (earlier)."""
    return _names(type(innermost(model)))[0]


def logits_to_keep_argument(model: nn.Module) -> str | None:
    """The forward argument that limits logits to the last positions, if the model has one
    (looked up on the innermost model: PEFT wrappers take it through ``**kwargs``)."""
    return _names(type(innermost(model)))[1]
