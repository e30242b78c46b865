"""Input checks shared by the loss functions.

Two tiers, because these functions run in hot training loops:

- **Structural checks** (shapes, scalar hyper-parameters such as ``beta > 0``) are free and
  always run.
- **Value checks** (non-finite entries, all-masked rows, target rows that do not sum to one,
  labels outside their range) read tensor values. On an accelerator that forces a
  host-device synchronisation, so they follow a module-level switch, :func:`set_validation`:

  - ``"auto"`` (default): value checks run when the tensors live on the CPU (no sync to pay)
    and are skipped on accelerators;
  - ``"on"``: always run (use while debugging a GPU run);
  - ``"off"``: never run (benchmarks, trusted inputs).

  The environment variable ``PREFKIT_LOSS_VALIDATION`` sets the initial mode.

Every failure is a ``ValueError`` naming the argument and what was expected.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator
from typing import Literal

import torch

ValidationMode = Literal["auto", "on", "off"]
_MODES: tuple[str, ...] = ("auto", "on", "off")

_mode: str = os.environ.get("PREFKIT_LOSS_VALIDATION", "auto").strip().lower()
if _mode not in _MODES:
    raise ValueError(f"PREFKIT_LOSS_VALIDATION must be one of {_MODES}, got {_mode!r}")


def set_validation(mode: ValidationMode | bool) -> None:
    """Set when value checks run: ``"auto"`` (CPU tensors only), ``"on"``/True, ``"off"``/False."""
    global _mode
    if mode is True:
        mode = "on"
    elif mode is False:
        mode = "off"
    if mode not in _MODES:
        raise ValueError(f"validation mode must be one of {_MODES} or a bool, got {mode!r}")
    _mode = mode


def get_validation() -> str:
    """The current value-check mode (``"auto"``, ``"on"`` or ``"off"``)."""
    return _mode


@contextlib.contextmanager
def validation(mode: ValidationMode | bool) -> Iterator[None]:
    """Context manager that sets the value-check mode and restores the previous one."""
    previous = _mode
    set_validation(mode)
    try:
        yield
    finally:
        set_validation(previous)


def value_checks_enabled(tensor: torch.Tensor) -> bool:
    """Whether value checks should run for ``tensor`` under the current mode."""
    if _mode == "on":
        return True
    if _mode == "off":
        return False
    return tensor.device.type == "cpu"


# ---------------------------------------------------------------------------- structural


def positive(name: str, value: float) -> None:
    """``value`` must be a finite number > 0."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(
                f"{name} must be a scalar > 0, got a tensor of shape {tuple(value.shape)}"
            )
        if not value_checks_enabled(value):
            return
        value = float(value)
    if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


def non_negative(name: str, value: float) -> None:
    """``value`` must be a finite number >= 0."""
    if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


def in_range(name: str, value: float, low: float, high: float) -> None:
    """``low <= value <= high`` for a Python number."""
    if not (isinstance(value, int | float) and low <= value <= high):
        raise ValueError(f"{name} must be a number in [{low}, {high}], got {value!r}")


def tensor(name: str, value: object) -> torch.Tensor:
    """``value`` must be a floating-point tensor."""
    if not isinstance(value, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if not value.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {value.dtype}")
    return value


def same_shape(
    ndim: int, *, dims: str | None = None, **tensors: torch.Tensor | None
) -> tuple[int, ...]:
    """All non-``None`` tensors are floating point with ``ndim`` dims and one common shape.

    Returns the common shape. The first tensor given sets the expected shape. ``dims`` names
    the layout in messages (default ``[B]`` for one dim, ``[B, K]`` for two).
    """
    expected: tuple[int, ...] | None = None
    first = ""
    for name, value in tensors.items():
        if value is None:
            continue
        tensor(name, value)
        shape = tuple(value.shape)
        if len(shape) != ndim:
            layout = dims or ("[B]" if ndim == 1 else "[B, K]" if ndim == 2 else f"{ndim} dims")
            raise ValueError(f"{name} must have shape {layout}, got {shape}")
        if expected is None:
            expected, first = shape, name
        elif shape != expected:
            raise ValueError(f"{name} must have the shape of {first} {expected}, got {shape}")
    if expected is None:
        raise ValueError(f"expected at least one tensor among {list(tensors)}")
    return expected


def required(name: str, value: object, why: str) -> None:
    """``value`` must be given (not ``None``)."""
    if value is None:
        raise ValueError(f"{name} is required {why}")


def mask_shape(mask: torch.Tensor | None, shape: tuple[int, ...]) -> None:
    """``mask`` is ``None`` or a boolean tensor of ``shape``."""
    if mask is None:
        return
    if not isinstance(mask, torch.Tensor):
        raise ValueError(f"mask must be a boolean torch.Tensor, got {type(mask).__name__}")
    if mask.dtype != torch.bool:
        raise ValueError(f"mask must have dtype torch.bool, got {mask.dtype}")
    if tuple(mask.shape) != shape:
        raise ValueError(f"mask must have shape {shape}, got {tuple(mask.shape)}")


# ---------------------------------------------------------------------------------- values


def _all_finite(values: list[torch.Tensor]) -> bool:
    """Fast path: one float64 sum per tensor; NaN and ±inf propagate through a sum, and float64
    cannot overflow on sums of float32/bf16 values, so a finite total means finite entries."""
    total = values[0].detach().sum(dtype=torch.float64)
    for value in values[1:]:
        total = total + value.detach().sum(dtype=torch.float64)
    return bool(torch.isfinite(total))


def finite(**tensors: torch.Tensor | None) -> None:
    """No NaN or infinity in any given tensor (a value check: follows the validation mode)."""
    checked = {
        name: value
        for name, value in tensors.items()
        if value is not None and value_checks_enabled(value)
    }
    if not checked or _all_finite(list(checked.values())):
        return
    for name, value in checked.items():
        bad = int((~torch.isfinite(value.detach())).sum())
        if bad:
            raise ValueError(f"{name} must be finite, found {bad} non-finite entries")


def finite_where(mask: torch.Tensor | None, **tensors: torch.Tensor | None) -> None:
    """Like :func:`finite` but only inside ``mask`` (padded list slots may hold anything)."""
    if mask is None:
        finite(**tensors)
        return
    finite(
        **{
            name: value.detach().masked_fill(~mask, 0.0)
            for name, value in tensors.items()
            if value is not None and value_checks_enabled(value)
        }
    )


def rows_not_empty(mask: torch.Tensor | None, minimum: int = 1) -> None:
    """Every row of ``mask`` keeps at least ``minimum`` entries (value check)."""
    if mask is None or not value_checks_enabled(mask):
        return
    counts = mask.sum(dim=-1)
    if bool((counts < minimum).any()):
        rows = torch.nonzero(counts < minimum).flatten()[:5].tolist()
        raise ValueError(
            f"mask must keep at least {minimum} entries in every row; rows {rows} keep fewer"
        )


def contiguous_rows(mask: torch.Tensor | None) -> None:
    """Each row's true entries form one contiguous run (a response: prompt, response, padding);
    a value check."""
    if mask is None or not value_checks_enabled(mask):
        return
    starts = (mask[:, 1:] & ~mask[:, :-1]).sum(dim=-1) + mask[:, 0].long()
    if bool((starts > 1).any()):
        rows = torch.nonzero(starts > 1).flatten()[:5].tolist()
        raise ValueError(
            f"mask must mark one contiguous run of response tokens per row; rows {rows} have gaps"
        )


def distribution_rows(
    name: str, target: torch.Tensor, mask: torch.Tensor | None, atol: float
) -> None:
    """Each row of ``target`` is non-negative and sums to one over the real (unmasked) entries."""
    if not value_checks_enabled(target):
        return
    t = target.detach()
    if mask is not None:
        t = t.masked_fill(~mask, 0.0)
    if bool((t < 0).any()):
        raise ValueError(f"{name} must be non-negative (a distribution per row)")
    sums = t.sum(dim=-1)
    if bool(((sums - 1).abs() > atol).any()):
        worst = float((sums - 1).abs().max())
        raise ValueError(
            f"{name} rows must sum to 1 over the unmasked entries (a distribution q over the "
            f"list); off by up to {worst:.3g}"
        )


def values_in(name: str, value: torch.Tensor | None, low: float, high: float) -> None:
    """All entries of ``value`` lie in ``[low, high]`` (value check)."""
    if value is None or not value_checks_enabled(value):
        return
    v = value.detach()
    if bool(((v < low) | (v > high)).any()):
        raise ValueError(f"{name} must lie in [{low}, {high}]")


def lengths(name: str, value: torch.Tensor | None, shape: tuple[int, ...]) -> None:
    """Token counts: shape ``shape``, and > 0 (the value part follows the validation mode)."""
    if value is None:
        raise ValueError(f"{name} is required (response token counts, shape {shape})")
    if not isinstance(value, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if tuple(value.shape) != shape:
        raise ValueError(f"{name} must have shape {shape}, got {tuple(value.shape)}")
    if value_checks_enabled(value) and bool((value.detach() <= 0).any()):
        raise ValueError(f"{name} must be > 0 (token counts)")
