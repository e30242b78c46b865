"""Simulated worlds with a known ground-truth preference (docs/worlds.md)."""

from prefkit.sim.annotators import POOLS, Annotator
from prefkit.sim.generator import GeneratorConfig
from prefkit.sim.registry import WORLDS, make_world
from prefkit.sim.world import Annotations, World, WorldConfig, nash_equilibrium

__all__ = [
    "POOLS",
    "WORLDS",
    "Annotations",
    "Annotator",
    "GeneratorConfig",
    "World",
    "WorldConfig",
    "make_world",
    "nash_equilibrium",
]
