"""Methods: what ``prefkit train --method NAME`` runs.

A method names one of the engine's step shapes and, for the loss-driven ones, a registry loss
plus default settings. Every pairwise and listwise loss of ``prefkit.losses.LOSSES`` is a
method under its own name, and so is every unpaired one (KTO, unpaired BCO, APO-zero); a few well-known recipes are added on top (cDPO, RPO, SFT). Online
methods (sample -> judge -> update) carry a :class:`Recipe` and are registered by
``prefkit.engine.online.methods``.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any, Literal

from prefkit.losses import LOSSES

StepKind = Literal["sft", "pairwise", "listwise", "unpaired", "online", "hindsight", "ilf", "genrm"]
"""The run builder a method uses (``prefkit.engine.train.RUN_BUILDERS``)."""

TAIL_INPUTS = ("chosen_tail_logps", "rejected_tail_logps", "ref_chosen_tail_logps", "ref_rejected_tail_logps")
WPO_INPUTS = ("chosen_wpo_logps", "rejected_wpo_logps")
KL_INPUTS = ("kl_logps", "ref_kl_logps")
STEP_INPUTS: dict[str, frozenset[str]] = {
    "pairwise": frozenset(TAIL_INPUTS + WPO_INPUTS),
    "listwise": frozenset(),
    "unpaired": frozenset(KL_INPUTS),
}
"""The ``LossSpec.inputs`` each offline step shape computes (``prefkit.engine.offline.shapes``):
a loss needing any other input (TPO's gold response) is not a method and ``loss.name`` refuses it."""


@dataclass(frozen=True)
class Recipe:
    """What an online method does: its objective (a key of
    ``prefkit.engine.online.objectives.OBJECTIVES``) and the defaults that define it. Fields of
    ``OnlineConfig`` left at ``None`` take these values; an explicit setting wins."""

    objective: str
    samples_per_prompt: int
    pairing: Literal["best_worst", "random", "all"] = "best_worst"
    iterations: int | None = None
    """Rounds; ``None`` is per-step online (every optimizer step samples afresh)."""
    ref_update: Literal["fixed", "previous"] = "fixed"
    extragradient: bool = False
    """EGPO: a half step to pi_{t+1/2}, fresh opponents from it, then the step from pi_t."""
    score: Literal["probability", "logit"] = "probability"
    """Win-rate targets from probabilities (SPPO) or skew-symmetric log-odds scores (GPO)."""
    on_policy: bool = False
    """A policy-gradient estimator: responses must be drawn from the policy at temperature 1."""
    needs_reward: bool = False
    """Scores each response with a scalar reward (or its win-rate, ``online.reward=win_rate``)."""
    needs_answers: bool = False
    exact_kl: bool = False
    """SuperHF: the KL prior is the full-vocabulary per-token KL (the official code's)."""
    critic: Literal["separate", "shared"] | None = None
    """PPO: the value model trained beside the policy (``online.critic`` overrides); ``None``:
    the method has no critic."""
    anchor: Literal["reference", "answer"] | None = None
    """Pairwise PPO: the response each sample is judged against (``online.anchor`` overrides);
    ``None``: the method has no anchor."""


@dataclass(frozen=True)
class Method:
    """One trainable method: a step shape, a loss and the settings that define the recipe."""

    name: str
    step: StepKind
    loss: str | None
    summary: str
    loss_params: dict[str, Any] = field(default_factory=dict)
    nll_weight: float = 0.0
    recipe: Recipe | None = None
    """Online methods only: what the online step builds and trains on."""


def _from_registry() -> dict[str, Method]:
    methods = {}
    for name, spec in LOSSES.items():
        if spec.kind in STEP_INPUTS and set(spec.inputs) <= STEP_INPUTS[spec.kind]:
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
    "coh": Method(
        "coh",
        "hindsight",
        None,
        "Chain of Hindsight (Liu et al. 2023, arXiv 2302.02676): SFT on feedback-conditioned sequences "
        "of both responses, loss on the response fields only; sampled after the positive phrase",
    ),
    "ilf": Method(
        "ilf",
        "ilf",
        None,
        "ILF (Scheurer et al. 2023, arXiv 2303.16755): rounds of refine (N per critique) -> select "
        "(does it incorporate the feedback?) -> SFT on the selected refinements",
    ),
    "genrm": Method(
        "genrm",
        "genrm",
        None,
        "Generative pairwise judge (Think-RM, arXiv 2505.16265; Pairwise-RL, arXiv 2504.04950): SFT of a "
        "causal LM to answer which response is better, both orders; a judge (llm:DIR)",
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
