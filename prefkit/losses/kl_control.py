"""KL-coefficient controllers for the KL penalty in the reward (PPO, RLOO, REINFORCE++).

The engine reads ``controller.value`` as ``kl_coef`` when it builds a rollout's advantages, and
calls ``controller.update(kl, n_steps)`` after each rollout batch with the measured KL;
``state_dict()`` / ``load_state_dict()`` make a resumed run continue with the same coefficient.
"""

from __future__ import annotations

import math
from typing import Any

from prefkit.losses import _checks


def _finite(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


class FixedKLController:
    """A constant KL coefficient (the same interface as :class:`AdaptiveKLController`)."""

    kind = "fixed"

    def __init__(self, kl_coef: float) -> None:
        _checks.non_negative("kl_coef", kl_coef)
        self.value = float(kl_coef)

    def update(self, current_kl: float, n_steps: int) -> float:
        """Nothing changes; returns the coefficient."""
        _finite("current_kl", current_kl)
        return self.value

    def state_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "value": self.value}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        _check_state(state, self.kind, ("value",))
        self.value = _finite("value", state["value"])


class AdaptiveKLController:
    """Adaptive KL coefficient: raise β when the policy's KL overshoots the target, lower it
    when it undershoots.

    Paper: Ziegler et al. 2019, "Fine-Tuning Language Models from Human Preferences",
    arXiv 1909.08593, the log-space proportional controller for β (as the
    ``AdaptiveKLController`` of TRL's former PPO trainer):
    ``e = clip(KL / KL_target − 1, −0.2, 0.2)``, ``β ← β · (1 + K_β · e)`` with
    ``K_β = n_steps / horizon``. AlpacaFarm's controller is the same rule with a fixed ``K_β``
    (``k_beta``, 0.1): pass ``n_steps = k_beta · horizon``.

    Args:
        init_kl_coef: β_0 > 0. target: KL_target > 0 (in the units of the KL you measure,
            e.g. the mean over sequences of the summed per-token KL, nats).
        horizon: steps over which the error is integrated (> 0; Ziegler et al. use 10000).
    """

    kind = "adaptive"

    def __init__(self, init_kl_coef: float, target: float, horizon: int) -> None:
        _checks.positive("init_kl_coef", init_kl_coef)
        _checks.positive("target", target)
        _checks.positive("horizon", horizon)
        self.value = float(init_kl_coef)
        self.target = float(target)
        self.horizon = float(horizon)

    def update(self, current_kl: float, n_steps: int) -> float:
        """One controller step after ``n_steps`` (samples or updates, > 0) with the measured KL;
        returns the new coefficient."""
        kl = _finite("current_kl", current_kl)
        _checks.positive("n_steps", n_steps)
        error = min(max(kl / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + error * n_steps / self.horizon
        return self.value

    def state_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "value": self.value, "target": self.target,
                "horizon": self.horizon}  # fmt: skip

    def load_state_dict(self, state: dict[str, Any]) -> None:
        _check_state(state, self.kind, ("value", "target", "horizon"))
        value, target = _finite("value", state["value"]), _finite("target", state["target"])
        horizon = _finite("horizon", state["horizon"])
        for name, number in (("value", value), ("target", target), ("horizon", horizon)):
            _checks.positive(name, number)
        self.value, self.target, self.horizon = value, target, horizon


def _check_state(state: Any, kind: str, keys: tuple[str, ...]) -> None:
    if not isinstance(state, dict):
        raise ValueError(f"a KL-controller state must be a dict, got {type(state).__name__}")
    if state.get("kind") != kind:
        raise ValueError(
            f"this state is from a {state.get('kind')!r} KL controller, not a {kind!r} one"
        )
    missing = [k for k in keys if k not in state]
    if missing:
        raise ValueError(f"KL-controller state lacks {missing}")
