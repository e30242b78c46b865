"""Experiment trackers (``train.report_to``) through accelerate's tracker classes.

Each tracker is the library's own client (``accelerate.tracking``): ``tensorboard`` writes under
``--out/tensorboard``; ``wandb`` (honours ``WANDB_MODE=offline``, ``WANDB_PROJECT``), ``mlflow``
(``MLFLOW_TRACKING_URI``, default ``--out/mlruns``) and ``trackio`` log to their own stores,
project name ``prefkit`` unless the environment says otherwise. Only the main process logs.
A tracker whose library is missing is an error before training, naming the extra to install.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefkit.errors import InputError


@dataclass(frozen=True)
class TrackerKind:
    """How to build one tracker: the module it needs and a factory ``(out_dir, run_name)``."""

    module: str
    extra: str
    build: Callable[[Path, str], Any]


def _tensorboard(out: Path, run: str) -> Any:
    from accelerate.tracking import TensorBoardTracker

    return TensorBoardTracker(run, out / "tensorboard")


def _wandb(out: Path, run: str) -> Any:
    from accelerate.tracking import WandBTracker

    return WandBTracker(os.environ.get("WANDB_PROJECT", "prefkit"), name=run, dir=str(out))


def _mlflow(out: Path, run: str) -> Any:
    from accelerate.tracking import MLflowTracker

    if "MLFLOW_TRACKING_URI" not in os.environ:
        import mlflow

        mlflow.set_tracking_uri((out / "mlruns").absolute().as_uri())
    return MLflowTracker(experiment_name="prefkit", run_name=run)


def _trackio(out: Path, run: str) -> Any:
    from accelerate.tracking import TrackioTracker

    return TrackioTracker(os.environ.get("TRACKIO_PROJECT", "prefkit"), name=run)


TRACKER_KINDS: dict[str, TrackerKind] = {
    "tensorboard": TrackerKind("tensorboard", "tensorboard", _tensorboard),
    "wandb": TrackerKind("wandb", "wandb", _wandb),
    "mlflow": TrackerKind("mlflow", "mlflow", _mlflow),
    "trackio": TrackerKind("trackio", "trackio", _trackio),
}


def check_trackers(names: Sequence[str]) -> list[str]:
    """The trackers to start (``none`` alone means none); unknown names and missing libraries
    are errors naming ``train.report_to``."""
    names = [n for n in names if n != "none"]
    for name in names:
        if name not in TRACKER_KINDS:
            raise InputError(f"unknown tracker {name!r} (known: none, {', '.join(TRACKER_KINDS)})",
                             field="train.report_to")
        kind = TRACKER_KINDS[name]
        if importlib.util.find_spec(kind.module) is None:
            raise InputError(f"{name} needs the {kind.module} library: pip install 'prefkit[{kind.extra}]'",
                             field="train.report_to")
    return names


class Trackers:
    """The started trackers of one run (main process only)."""

    def __init__(self, names: Sequence[str], out_dir: Path, run_name: str, config: dict[str, Any]) -> None:
        self.trackers = [TRACKER_KINDS[name].build(out_dir, run_name) for name in check_trackers(names)]
        for tracker in self.trackers:
            tracker.start()
            tracker.store_init_configuration(_flat(config))

    def log(self, values: dict[str, float], step: int) -> None:
        for tracker in self.trackers:
            tracker.log(values, step=step)

    def finish(self) -> None:
        for tracker in self.trackers:
            tracker.finish()

    def __bool__(self) -> bool:
        return bool(self.trackers)


def _flat(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flat(value, name + "."))
        elif isinstance(value, (int, float, str, bool)) or value is None:
            out[name] = value
        else:
            out[name] = str(value)
    return out
