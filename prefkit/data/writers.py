"""Writing feedback records: JSONL and Parquet in TRL's columns (atomic), or a ``datasets.Dataset``."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from prefkit._atomic import atomic_path
from prefkit.data.records import ListRecord, PairRecord, PromptRecord, UnpairedRecord

Record = PairRecord | ListRecord | PromptRecord | UnpairedRecord
OPTIONAL_PAIR_COLUMNS = ("label", "margin", "weight", "annotator")


def _one_type(records: Iterable[Record]) -> tuple[list[Record], type]:
    rows = list(records)
    if not rows:
        raise ValueError("no records to write (an empty feedback file cannot be read back)")
    kinds = {type(r) for r in rows}
    if len(kinds) > 1 or not kinds <= {PairRecord, ListRecord, PromptRecord, UnpairedRecord}:
        names = ", ".join(sorted(k.__name__ for k in kinds))
        raise ValueError(f"records must all be PairRecord, all ListRecord, all PromptRecord or all UnpairedRecord, "
                         f"got {names}")
    return rows, kinds.pop()


def write_jsonl(records: Iterable[Record], path: str | Path) -> Path:
    """One JSON object per line in TRL's columns (``label`` only when not 1.0, optional fields
    only when set); written to a temporary file and renamed, so readers never see half a file."""
    rows, _ = _one_type(records)
    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8") as handle:
        for index, record in enumerate(rows):
            try:
                line = json.dumps(record.to_json(), ensure_ascii=False, allow_nan=False)
            except ValueError as err:
                raise ValueError(f"record {index}: {err} (labels, margins, weights and scores must be finite)") from err
            handle.write(line + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    return Path(path)


def columns_of(records: Iterable[Record]) -> dict[str, list[Any]]:
    """Column-oriented TRL layout: one list per column, optional pair columns only when some
    record sets them (others hold their default: label 1.0, else null)."""
    rows, kind = _one_type(records)
    if kind is ListRecord:
        return {
            "prompt": [r.prompt for r in rows],
            "responses": [r.responses for r in rows],
            "scores": [r.scores for r in rows],
        }
    if kind is PromptRecord:
        return {"prompt": [r.prompt for r in rows]}
    if kind is UnpairedRecord:
        unpaired: dict[str, list[Any]] = {"prompt": [r.prompt for r in rows], "completion": [r.completion for r in rows],
                                          "label": [r.label for r in rows]}
        for name in ("weight", "annotator"):
            if any(getattr(r, name) is not None for r in rows):
                unpaired[name] = [getattr(r, name) for r in rows]
        return unpaired
    columns: dict[str, list[Any]] = {
        "prompt": [r.prompt for r in rows],
        "chosen": [r.chosen for r in rows],
        "rejected": [r.rejected for r in rows],
    }
    for name in OPTIONAL_PAIR_COLUMNS:
        values = [getattr(r, name) for r in rows]
        used = any(v != 1.0 for v in values) if name == "label" else any(v is not None for v in values)
        if used:
            columns[name] = values
    return columns


def write_parquet(records: Iterable[Record], path: str | Path) -> Path:
    """The same columns as :func:`write_jsonl` in one Parquet file (atomic). A column must be
    all strings or all message lists: Parquet columns have one type."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = _arrow_table(columns_of(records), pa.array)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return Path(path)


def _arrow_table(columns: dict[str, list[Any]], to_array: Callable[[list[Any]], Any]) -> Any:
    import pyarrow as pa

    arrays = {}
    for name, values in columns.items():
        try:
            arrays[name] = to_array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as err:
            raise ValueError(
                f"column '{name}' cannot be stored in Parquet ({err}); a column must be all strings "
                "or all message lists; write JSONL for mixed rows"
            ) from err
    return pa.table(arrays)


def to_hf_dataset(records: Iterable[Record]) -> Any:
    """A ``datasets.Dataset`` with TRL's columns (same layout as :func:`write_parquet`)."""
    import pyarrow as pa
    from datasets import Dataset

    return Dataset(_arrow_table(columns_of(records), pa.array))
