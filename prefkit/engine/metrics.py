"""Metric logging: ``metrics.jsonl`` always, experiment trackers on request, a progress bar.

Metric names are stable across methods (``loss``, ``rewards/chosen``, ``rewards/rejected``,
``rewards/margins``, ``rewards/accuracies``, ``logps/chosen``, ``logps/rejected``, ``kl``,
``lr``, ``grad_norm``, ``tokens``, ``queries``; held-out values under ``eval/``), so runs of
different methods compare directly (docs/internals.md lists them). Only the main process logs.
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import Any

import torch
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from prefkit._atomic import atomic_write_text


class MetricSums:
    """Sums and counts of metrics over the rows of a step (micro-batches and ranks merged).

    ``add(name, values)`` adds a tensor's entries (each counts once); ``add_total(name, total,
    count)`` adds a precomputed sum. The reported value of a metric is ``sum / count``.
    """

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.counts: dict[str, float] = {}

    def add(self, name: str, values: torch.Tensor) -> None:
        values = values.detach().float()
        self.add_total(name, float(values.sum()), values.numel())

    def add_total(self, name: str, total: float, count: float) -> None:
        self.sums[name] = self.sums.get(name, 0.0) + float(total)
        self.counts[name] = self.counts.get(name, 0.0) + float(count)

    def merge(self, other: MetricSums) -> None:
        for name, total in other.sums.items():
            self.add_total(name, total, other.counts[name])

    def means(self) -> dict[str, float]:
        return {name: total / self.counts[name] for name, total in self.sums.items() if self.counts[name] > 0}

    def to_json(self) -> dict[str, Any]:
        return {"sums": self.sums, "counts": self.counts}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MetricSums:
        out = cls()
        out.sums = {k: float(v) for k, v in data.get("sums", {}).items()}
        out.counts = {k: float(v) for k, v in data.get("counts", {}).items()}
        return out


class MetricsLogger:
    """Appends one JSON object per logged step to ``metrics.jsonl`` (and to the trackers).

    The file is first written whole through a temporary file (on resume: the rows at or before
    the resumed step, so an interrupted-then-resumed run leaves the same file as an
    uninterrupted one), then kept open for appending; a symlink at its path is replaced, never
    followed.
    """

    def __init__(self, out_dir: str | Path, *, resume_step: int | None = None, trackers: Any = None) -> None:
        self.path = Path(out_dir) / "metrics.jsonl"
        kept: list[str] = []
        if resume_step is not None and self.path.is_file() and not self.path.is_symlink():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut by the kill that the resume is recovering from
                if row.get("step", 0) <= resume_step:
                    kept.append(line)
        atomic_write_text(self.path, "".join(k + "\n" for k in kept))
        flags = os.O_WRONLY | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0)
        self._handle = os.fdopen(os.open(self.path, flags), "a", encoding="utf-8")
        self.trackers = trackers

    def log(self, step: int, metrics: dict[str, Any]) -> None:
        row = {"step": step, **{k: plain(v) for k, v in metrics.items()}}
        self._handle.write(json.dumps(row) + "\n")
        self._handle.flush()
        if self.trackers is not None:
            self.trackers.log(
                {k: v for k, v in row.items() if k != "step" and isinstance(v, (int, float)) and math.isfinite(v)},
                step,
            )

    def close(self) -> None:
        self._handle.close()


def plain(value: Any) -> Any:
    """A JSON-safe scalar (non-finite floats as strings)."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def progress_bar(total: int, description: str, *, enabled: bool | None = None) -> Progress:
    """A rich progress bar, shown only on an interactive terminal unless forced."""
    if enabled is None:
        enabled = sys.stderr.isatty()
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        disable=not enabled,
        transient=False,
    )
