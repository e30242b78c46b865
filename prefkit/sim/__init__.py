"""Simulated worlds with a known ground-truth preference (docs/worlds.md).

``make_world(name, seed, **overrides)`` builds one of ``WORLDS``; ``evaluate`` measures a
policy's samples against the reference under the world's true preference.
"""

from prefkit.sim.annotators import POOLS, Annotator
from prefkit.sim.evaluation import (
    Evaluation,
    best_of_n,
    candidate_pool,
    evaluate,
    evaluate_policy,
    style_mixture,
    win_matrix,
)
from prefkit.sim.generator import GeneratorConfig
from prefkit.sim.registry import WORLDS, make_world
from prefkit.sim.world import Annotations, World, WorldConfig, nash_equilibrium

__all__ = [
    "POOLS",
    "WORLDS",
    "Annotations",
    "Annotator",
    "Evaluation",
    "GeneratorConfig",
    "World",
    "WorldConfig",
    "best_of_n",
    "candidate_pool",
    "evaluate",
    "evaluate_policy",
    "make_world",
    "nash_equilibrium",
    "style_mixture",
    "win_matrix",
]
