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


@cache
def _names(model_type: type) -> tuple[str, str | None]:
    parameters = inspect.signature(model_type.forward).parameters
    cache_name = "cache" if "cache" in parameters else "past_key_values"
    keep = next((n for n in ("logits_to_keep", "num_logits_to_keep") if n in parameters), None)
    return cache_name, keep


def cache_argument(model: nn.Module) -> str:
    """``cache`` (transformers >= 5.x) or ``past_key_values`` (earlier)."""
    return _names(type(unwrap(model)))[0]


def logits_to_keep_argument(model: nn.Module) -> str | None:
    """The forward argument that limits logits to the last positions, if the model has one."""
    return _names(type(unwrap(model)))[1]
