"""Training pairs for preference models, in a backbone's prepared form.

A label below 1/2 is read as the swapped pair with label ``1 - p`` (``swapped`` counts them);
ties (label 1/2) are kept or left out by ``rm.ties`` (``ties_excluded`` counts them).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from prefkit.config import RewardModelConfig
from prefkit.data.records import PairRecord
from prefkit.errors import InputError
from prefkit.preference.base import TIE


@dataclass
class PairData:
    """Training pairs in a backbone's prepared form: ``rows[i] = [prompt, chosen, rejected]``
    segments, oriented so that ``labels >= 1/2``."""

    rows: list[list[Any]]
    labels: torch.Tensor
    margins: torch.Tensor
    weights: torch.Tensor
    strength: torch.Tensor | None = None
    sources: list[Any] = field(default_factory=list)
    ties_excluded: int = 0
    swapped: int = 0

    def __len__(self) -> int:
        return len(self.rows)


def _oriented(record: PairRecord) -> tuple[Any, Any, float, bool]:
    if record.label < TIE:
        return record.rejected, record.chosen, 1.0 - record.label, True
    return record.chosen, record.rejected, float(record.label), False


def pair_data(
    backbone: Any,
    records: Sequence[PairRecord],
    rm: RewardModelConfig,
    *,
    strength: Sequence[float] | None = None,
) -> PairData:
    """Prepare records for training (see the module doc for ties, orientation and margins)."""
    keep = [i for i, r in enumerate(records) if not (rm.ties == "exclude" and r.label == TIE)]
    if not keep:
        raise InputError("no pairs to train on" + (" (every pair is a tie and rm.ties=exclude)" if records else ""))
    chosen, rejected, labels, swapped = [], [], [], 0
    for i in keep:
        c, r, p, flipped = _oriented(records[i])
        chosen.append(c), rejected.append(r), labels.append(p)
        swapped += flipped
    rows = backbone.prepare([records[i].prompt for i in keep], chosen, rejected)
    margins = torch.tensor([(records[i].margin or 0.0) + rm.margin for i in keep], dtype=torch.float32)
    weights = torch.tensor([1.0 if records[i].weight is None else records[i].weight for i in keep])
    mu = None
    if rm.adaptive_margin:
        if strength is None:
            raise InputError("rm.adaptive_margin needs the strength_mean column (from `prefkit rm strength`)",
                             field="strength_mean")
        mu = torch.tensor([float(strength[i]) for i in keep], dtype=torch.float32)
    return PairData(rows=rows, labels=torch.tensor(labels, dtype=torch.float32), margins=margins,
                    weights=weights.float(), strength=mu, sources=[records[i].source for i in keep],
                    ties_excluded=len(records) - len(keep), swapped=swapped)


def tensor_pair_data(
    backbone: Any,
    prompts: torch.Tensor,
    chosen: torch.Tensor,
    rejected: torch.Tensor,
    labels: torch.Tensor | None = None,
) -> PairData:
    """Pairs of feature vectors (``FeatureBackbone``); labels default to 1."""
    n = chosen.shape[0]
    labels = torch.ones(n) if labels is None else labels.float()
    flip = labels < TIE
    c = torch.where(flip[:, None], rejected, chosen)
    r = torch.where(flip[:, None], chosen, rejected)
    return PairData(rows=backbone.prepare(prompts, c, r), labels=torch.where(flip, 1 - labels, labels),
                    margins=torch.zeros(n), weights=torch.ones(n), swapped=int(flip.sum()))


def read_strength_column(path: str, records: Sequence[PairRecord], name: str = "strength_mean") -> list[float]:
    """The ``name`` column of each record's row (JSONL or Parquet), by the record's line."""
    suffix = Path(path).suffix.lower()
    values: list[float] = []
    if suffix in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        if name not in table.column_names:
            raise InputError(f"missing column '{name}' (write it with `prefkit rm strength`)", file=path, field=name)
        column = table.column(name).to_pylist()
        raw = [column[r.source[1] - 1] for r in records]
    else:
        with open(path, encoding="utf-8-sig") as handle:
            lines = handle.read().split("\n")
        raw = []
        for r in records:
            row = json.loads(lines[r.source[1] - 1])
            if name not in row:
                raise InputError(f"missing column '{name}' (write it with `prefkit rm strength`)", file=path,
                                 line=r.source[1], field=name)
            raw.append(row[name])
    for r, value in zip(records, raw):
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise InputError(f"must be a finite number, got {value!r}", file=path, line=r.source[1], field=name)
        values.append(float(value))
    return values


