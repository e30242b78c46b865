"""Methods: what ``prefkit train --method NAME`` runs.

A method names one of the engine's step shapes and, for the loss-driven ones, a registry loss
plus default settings. Every pairwise and listwise loss of ``prefkit.losses.LOSSES`` is a
method under its own name; a few well-known recipes are added on top (cDPO, RPO, SFT). Online
methods (sample -> judge -> update) are registered by ``prefkit.engine.online``.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any, Literal

from prefkit.losses import LOSSES

StepKind = Literal["sft", "pairwise", "listwise", "online"]


@dataclass(frozen=True)
class Method:
    """One trainable method: a step shape, a loss and the settings that define the recipe."""

    name: str
    step: StepKind
    loss: str | None
    summary: str
    loss_params: dict[str, Any] = field(default_factory=dict)
    nll_weight: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


def _from_registry() -> dict[str, Method]:
    methods = {}
    for name, spec in LOSSES.items():
        if spec.kind in ("pairwise", "listwise") and not spec.inputs:  # inputs: steps cannot feed them yet
            methods[name] = Method(name, spec.kind, name, spec.paper)
    return methods


METHODS: dict[str, Method] = {
    **_from_registry(),
    "sft": Method("sft", "sft", None, "Supervised fine-tuning (NLL of the chosen/only response)"),
    "cdpo": Method(
        "cdpo",
        "pairwise",
        "dpo",
        "Conservative DPO: DPO with label smoothing 0.1 (Mitchell 2023)",
        loss_params={"label_smoothing": 0.1},
    ),
    "rpo": Method(
        "rpo",
        "pairwise",
        "dpo",
        "RPO: DPO plus an NLL term on the chosen response (Pang et al. 2024, arXiv 2404.19733)",
        nll_weight=1.0,
    ),
}


def register_method(method: Method) -> None:
    """Add a method (used by the online step to register its methods)."""
    METHODS[method.name] = method


def get_method(name: str) -> Method:
    if name not in METHODS:
        close = difflib.get_close_matches(name, list(METHODS), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise ValueError(f"method: unknown method {name!r}{hint} (see `prefkit train --help`)")
    return METHODS[name]
