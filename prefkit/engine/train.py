"""``train(cfg)``: any method, through the one run driver (``prefkit.engine.run``).

The method's step kind picks the run builder: offline (pairs, lists, SFT) or online (sample ->
judge -> update). Both open a :class:`~prefkit.engine.run.RunSession`, build their step shape
and hand it to ``session.fit``; the session owns everything else.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from prefkit.config import RunConfig
from prefkit.engine.data import TrainData, check_unpair
from prefkit.engine.methods import StepKind, get_method
from prefkit.engine.offline.genrm import run_genrm
from prefkit.engine.offline.hindsight import run_hindsight
from prefkit.engine.offline.ilf import run_ilf
from prefkit.engine.offline.train import run_offline
from prefkit.engine.online.train import run_online
from prefkit.engine.run import RunSession, TrainResult
from prefkit.errors import InputError
from prefkit.policy import Policy
from prefkit.preference import PreferenceModel

EPOCH_STEPS: frozenset[StepKind] = frozenset({"sft", "pairwise", "listwise", "unpaired"})
"""Step kinds whose length ``train.epochs`` may give (a fixed data set, one example per row)."""

RUN_BUILDERS: dict[StepKind, Callable[..., TrainResult]] = {
    "sft": run_offline,
    "pairwise": run_offline,
    "listwise": run_offline,
    "unpaired": run_offline,
    "online": run_online,
    "hindsight": run_hindsight,
    "ilf": run_ilf,
    "genrm": run_genrm,
}


def train(
    cfg: RunConfig,
    *,
    data: TrainData | None = None,
    policy: Policy | None = None,
    reference: Policy | None = None,
    resume: bool = False,
    progress: bool | None = None,
    evaluate: Callable[[Policy, Policy | None, int], dict[str, Any]] | None = None,
    judge: PreferenceModel | None = None,
    allow_config_change: Sequence[str] = (),
) -> TrainResult:
    """Run ``cfg.method`` for ``cfg.train.steps`` optimizer steps and write everything to ``cfg.out``.

    ``data``/``policy``/``reference`` may be given in memory (the demo does); otherwise they come
    from ``cfg.data.path``, ``cfg.model`` and ``cfg.ref_model``. ``evaluate(policy, reference,
    step)`` is called every ``train.eval_every`` steps and at the end (main process); its numbers
    are logged under ``eval/``. ``judge`` overrides ``online.judge`` with an in-memory preference
    model (online methods). ``allow_config_change`` lists optimisation keys a ``resume`` may change.
    """
    method = get_method(cfg.method)
    if cfg.train.epochs is not None and method.step not in EPOCH_STEPS:
        raise InputError(f"train.epochs counts passes over a fixed data set, and --method {method.name} "
                         + ("samples new data each round: set train.steps (and online.epochs for passes over a "
                            "round)" if method.step == "online" else "counts its length in train.steps: set it"),
                         field="train.epochs")
    check_unpair(cfg, method)
    if judge is not None and method.step != "online":
        raise ValueError(f"judge= is for online methods; {method.name} is {method.step}")
    session = RunSession.start(cfg, resume=resume, allow_config_change=allow_config_change)
    try:
        extra = {"judge": judge} if method.step == "online" else {}
        return RUN_BUILDERS[method.step](session, method, data=data, policy=policy, reference=reference,
                                         evaluate=evaluate, progress=progress, **extra)
    finally:
        session.close()
