"""The runs of preference-model kinds that do not train on pairs.

``train_preference_model(cfg)`` (``train.py``) trains the pairwise kinds (``bt``, ``gpm``,
``pairpm``) itself and hands an ``rm.kind`` registered here to its own run: ``ordinal`` trains on
ratings (``ordinal.py``). The table keeps the dependency one way: ``ordinal`` builds its model
with ``train.build_preference_model``, and ``train`` reaches ``ordinal`` only through this table,
which this package's ``__init__`` fills by importing ``ordinal``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class KindRun:
    """The run of one preference-model kind that trains on other feedback than pairs."""

    run: Callable[..., Any]
    """``run(cfg, *, resume, progress, save, allow_config_change)``: trains ``cfg.rm.kind`` on
    ``cfg.data.path`` and writes ``cfg.out`` as ``rm train`` does."""
    feedback: str
    """What it trains on (``ratings``), for the error when it is handed pairs."""
    call: str
    """How to call it with records in memory (``module.function(cfg, ratings=...)``)."""


KIND_RUNS: dict[str, KindRun] = {}
"""``rm.kind`` -> its run, for the kinds that do not train on pairs."""


def register_kind_run(kind: str, run: KindRun) -> None:
    """Make ``train_preference_model`` hand ``rm.kind=kind`` to ``run``; a kind registers once."""
    if kind in KIND_RUNS:
        raise ValueError(f"rm.kind={kind} already has a run ({KIND_RUNS[kind].call})")
    KIND_RUNS[kind] = run
