"""The built-in worlds by name: ``WORLDS`` and ``make_world``."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any

from prefkit.sim.world import World, WorldConfig


def transitive(seed: int = 0, **overrides: Any) -> World:
    """Bradley-Terry world (no cycle) with AlpacaFarm-style noisy annotators (25% flips)."""
    config = WorldConfig(cyclic_strength=0.0, annotators="alpacafarm").replace(**overrides)
    return World("transitive", config, seed)


def cyclic(seed: int = 0, **overrides: Any) -> World:
    """A strong style cycle (c = 3) on top of the utility; clean labels drawn from P*.

    Among good responses the cycle dominates, so the style-level Nash equilibrium is mixed and a
    policy that commits to one style (what a Bradley-Terry reward maximiser does) is exploitable.
    """
    config = WorldConfig(cyclic_strength=3.0, annotators="clean").replace(**overrides)
    return World("cyclic", config, seed)


def noisy(seed: int = 0, **overrides: Any) -> World:
    """The transitive utility judged by a strongly length-biased pool with 25% label flips."""
    config = WorldConfig(cyclic_strength=0.0, annotators="length_biased").replace(**overrides)
    return World("noisy", config, seed)


WORLDS: dict[str, Callable[..., World]] = {
    "transitive": transitive,
    "cyclic": cyclic,
    "noisy": noisy,
}


def make_world(name: str, seed: int = 0, **overrides: Any) -> World:
    """Build a built-in world; ``overrides`` replace ``WorldConfig`` fields (e.g. annotators)."""
    if name not in WORLDS:
        close = difflib.get_close_matches(name, list(WORLDS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"unknown world {name!r}{hint}; worlds: {', '.join(WORLDS)}")
    return WORLDS[name](seed, **overrides)
