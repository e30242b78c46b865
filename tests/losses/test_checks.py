"""The value-check switch: what runs in each mode."""

from __future__ import annotations

import math

import pytest
import torch

from prefkit import losses as L
from prefkit.losses import _checks


def t(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def test_default_mode_is_auto_and_checks_cpu_values():
    assert L.get_validation() == "auto"
    assert _checks.value_checks_enabled(t(1.0))
    assert not _checks.value_checks_enabled(torch.empty(1, device="meta"))


def test_off_skips_value_checks_but_never_shape_or_hyper_parameter_checks():
    nan = t(math.nan)
    with L.validation("off"):
        assert L.get_validation() == "off"
        assert torch.isnan(L.dpo(nan, t(0.0), t(0.0), t(0.0)))
        with pytest.raises(ValueError, match="beta"):
            L.dpo(t(0.0), t(0.0), t(0.0), t(0.0), beta=0.0)
        with pytest.raises(ValueError, match="rejected_logps"):
            L.dpo(t(0.0), t(0.0, 1.0), t(0.0), t(0.0))
    assert L.get_validation() == "auto"
    with pytest.raises(ValueError, match="finite"):
        L.dpo(nan, t(0.0), t(0.0), t(0.0))


def test_on_checks_accelerator_tensors_too():
    with L.validation(True):
        assert _checks.value_checks_enabled(torch.empty(1, device="meta"))


def test_bad_mode():
    with pytest.raises(ValueError, match="validation mode"):
        L.set_validation("sometimes")


def test_non_tensor_and_integer_inputs_are_rejected():
    with pytest.raises(ValueError, match=r"chosen_logps must be a torch\.Tensor"):
        L.dpo([0.0], t(0.0), t(0.0), t(0.0))
    with pytest.raises(ValueError, match="floating-point"):
        L.dpo(torch.tensor([1]), t(0.0), t(0.0), t(0.0))
    with pytest.raises(ValueError, match=r"dtype torch\.bool"):
        L.lipo_lambda(
            t(0.0, 1.0)[None], t(0.0, 1.0)[None], t(0.0, 1.0)[None], mask=torch.ones(1, 2)
        )


def test_finite_fast_path_has_no_false_positive_on_huge_finite_values():
    huge = torch.tensor([1e308, 1e308], dtype=torch.float64)
    _checks.finite(huge=huge)  # the float64 sum overflows; the exact check then finds nothing
    with pytest.raises(ValueError, match="found 1 non-finite"):
        _checks.finite(ok=t(1.0), huge=torch.tensor([1e308, math.inf], dtype=torch.float64))
    opposite = t(math.inf, -math.inf)  # sums to NaN: still caught
    with pytest.raises(ValueError, match="opposite must be finite, found 2"):
        _checks.finite(opposite=opposite)
