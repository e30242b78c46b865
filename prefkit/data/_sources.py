"""Rows from a JSONL file, a Parquet file, a ``datasets.Dataset`` or a ``save_to_disk`` folder.

Every source yields ``(line, row)`` pairs, where ``line`` is the 1-based line (JSONL) or row
number (Parquet, datasets) and ``row`` is a dict or, for a line that cannot be a row at all
(malformed JSON, invalid UTF-8, not an object), a :class:`RowError`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefkit.data.report import FileContentError, RowError
from prefkit.errors import InputError

__all__ = ["FileContentError", "RowSource", "open_source", "row_bytes", "row_too_long"]

JSONL_SUFFIXES = (".jsonl", ".json", ".ndjson")
PARQUET_SUFFIXES = (".parquet", ".pq")
BATCH_ROWS = 1024


@dataclass
class RowSource:
    """An opened source: its display name, its columns when known up front, and its rows."""

    file: str
    columns: list[str] | None
    rows: Iterator[tuple[int, dict[str, Any] | RowError]]
    blank_lines: list[int]


def open_source(data: Any, *, max_row_bytes: int | None = None) -> RowSource:
    """Open a path (JSONL, Parquet, ``save_to_disk`` directory), a ``datasets.Dataset``, or a
    :class:`~prefkit.data.sources.DataSource` (a split of a DatasetDict or hub dataset, a column
    map).

    Path problems (missing file, unknown type) raise :class:`InputError`; a file that opens but
    cannot be read raises :class:`FileContentError`. A JSONL line longer than ``max_row_bytes``
    is read in bounded pieces and becomes a :class:`RowError` (columnar rows are measured by the
    reader with :func:`row_bytes`).
    """
    from prefkit.data.sources import DataSource

    if isinstance(data, DataSource):
        return _mapped_source(data, max_row_bytes)
    if not isinstance(data, (str, os.PathLike)):
        return _dataset_source(data, "<datasets.Dataset>")
    if isinstance(data, str) and data.startswith("studio:"):  # the votes of a prefkit studio project
        from prefkit.studio.export import studio_rows

        return RowSource(*studio_rows(data[len("studio:"):]), [])
    path = Path(data)
    name = str(data)
    if path.is_dir():
        return _saved_dataset_source(path)
    if not path.exists():
        raise InputError("no such file or directory", file=name)
    suffix = path.suffix.lower()
    if suffix in JSONL_SUFFIXES:
        blank: list[int] = []
        return RowSource(name, None, _jsonl_rows(path, name, blank, max_row_bytes), blank)
    if suffix in PARQUET_SUFFIXES:
        return _parquet_source(path, name)
    raise InputError(
        f"unsupported file type '{suffix or path.name}': expected JSON Lines (.jsonl), Parquet "
        "(.parquet) or a directory written by datasets' Dataset.save_to_disk",
        file=name,
    )


def _mapped_source(data: Any, max_row_bytes: int | None) -> RowSource:
    from prefkit.data.columns import renamed_columns, renamed_rows
    from prefkit.data.sources import resolve

    target, name = resolve(data)
    source = open_source(target, max_row_bytes=max_row_bytes)
    if not isinstance(target, (str, os.PathLike)):
        source.file = name
    if not data.columns:
        return source
    columns = source.columns
    if columns is not None:
        columns = renamed_columns(columns, data.columns, source.file)
    rows = renamed_rows(source.rows, data.columns, source.file, check_first=source.columns is None)
    return RowSource(source.file, columns, rows, source.blank_lines)


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for key, value in pairs:
        if key in row:
            raise _DuplicateKey(key)
        row[key] = value
    return row


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def row_too_long(size: int, limit: int, what: str = "row") -> str:
    """The reason of a row over the byte limit (one wording for every source)."""
    return (
        f"{what} is {size} bytes, over the limit of {limit} bytes per row (data.max_row_bytes; "
        "validate: --max-row-bytes; raise it to read longer rows)"
    )


def row_bytes(value: Any) -> int:
    """UTF-8 bytes of the text in a row (strings in nested lists and dicts, keys included);
    numbers and other scalars count 8 bytes."""
    if isinstance(value, str):
        return len(value) if value.isascii() else len(value.encode("utf-8", "surrogatepass"))
    if isinstance(value, dict):
        return sum(row_bytes(k) + row_bytes(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return sum(row_bytes(v) for v in value)
    return 8


def _lines(handle: Any, limit: int | None) -> Iterator[tuple[bytes | None, int, int]]:
    """``(line, bytes in the file, bytes without the line ending)`` per line of a binary file; a
    line longer than ``limit`` is skipped in 1 MiB pieces and comes as ``None``, so memory stays
    bounded."""
    if limit is None:
        for raw in handle:
            yield raw, len(raw), len(raw)
        return
    while raw := handle.readline(limit + 2):  # room for the content and "\r\n"
        size, tail = len(raw), raw[-2:]
        while not tail.endswith(b"\n"):  # a line over the limit: its rest is counted, not kept
            more = handle.readline(1 << 20)
            if not more:
                break
            size, tail = size + len(more), (tail + more)[-2:]
        content = size - (2 if tail == b"\r\n" else 1 if tail.endswith(b"\n") else 0)
        yield (raw if content <= limit else None), size, content


def _jsonl_rows(
    path: Path, name: str, blank: list[int], max_row_bytes: int | None = None
) -> Iterator[tuple[int, dict[str, Any] | RowError]]:
    offset = 0
    with path.open("rb") as handle:
        for line_no, (raw, size, content) in enumerate(_lines(handle, max_row_bytes), start=1):
            start, offset = offset, offset + size
            if raw is None:
                yield line_no, RowError(name, line_no, None, row_too_long(content, max_row_bytes or 0, "the line"))
                continue
            body = raw[3:] if line_no == 1 and raw.startswith(b"\xef\xbb\xbf") else raw
            if not body.strip():
                blank.append(line_no)
                continue
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError as err:
                at = err.start + (len(raw) - len(body))
                yield line_no, RowError(
                    name, line_no, None,
                    f"invalid UTF-8 at byte offset {at} of the line (offset {start + at} in the file)",
                )
                continue
            try:
                row = json.loads(text, object_pairs_hook=_reject_duplicate_keys)
            except _DuplicateKey as err:
                yield line_no, RowError(name, line_no, err.key, f"key '{err.key}' appears twice in one object")
                continue
            except json.JSONDecodeError as err:
                what = err.msg.removesuffix(" at")  # "Unterminated string starting at"
                yield line_no, RowError(name, line_no, None, f"malformed JSON: {what} at column {err.colno}")
                continue
            if not isinstance(row, dict):
                hint = ""
                if isinstance(row, list) and line_no == 1:
                    hint = " (prefkit reads JSON Lines, one object per line, not a JSON array)"
                kind = "array" if isinstance(row, list) else type(row).__name__
                yield line_no, RowError(name, line_no, None, f"row must be a JSON object, got {kind}{hint}")
                continue
            yield line_no, row


def _parquet_source(path: Path, name: str) -> RowSource:
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except Exception as err:  # pyarrow raises several types for corrupt files
        raise FileContentError(f"not a readable Parquet file: {err}", file=name) from err

    def rows() -> Iterator[tuple[int, dict[str, Any] | RowError]]:
        number = 0
        try:
            for batch in parquet.iter_batches(batch_size=BATCH_ROWS):
                for row in batch.to_pylist():
                    number += 1
                    yield number, row
        except Exception as err:
            raise FileContentError(f"cannot read Parquet row {number + 1}: {err}", file=name) from err

    return RowSource(name, list(parquet.schema_arrow.names), rows(), [])


def _saved_dataset_source(path: Path) -> RowSource:
    name = str(path)
    if (path / "dataset_dict.json").exists():
        splits = sorted(p.name for p in path.iterdir() if p.is_dir())
        raise InputError(
            f"a DatasetDict with splits {', '.join(splits)}: pass one split's directory, "
            f"e.g. {path / (splits[0] if splits else 'train')}",
            file=name,
        )
    if not (path / "state.json").exists():
        raise InputError("a directory, but not one written by datasets' Dataset.save_to_disk", file=name)
    from datasets import load_from_disk

    try:
        dataset = load_from_disk(str(path))
    except Exception as err:
        raise FileContentError(f"cannot load the saved dataset: {err}", file=name) from err
    return _dataset_source(dataset, name)


def _dataset_source(dataset: Any, name: str) -> RowSource:
    columns = getattr(dataset, "column_names", None)
    if isinstance(columns, dict):
        raise InputError(
            f"a DatasetDict with splits {', '.join(columns)}: pass one split, e.g. dataset['train']",
            file=name,
        )
    if not isinstance(columns, list) or not hasattr(dataset, "iter"):
        raise InputError(
            f"expected a path or a datasets.Dataset, got {type(dataset).__name__}", file=name
        )

    def rows() -> Iterator[tuple[int, dict[str, Any] | RowError]]:
        number = 0
        for batch in dataset.iter(batch_size=BATCH_ROWS):
            for values in zip(*(batch[c] for c in columns)):
                number += 1
                yield number, dict(zip(columns, values))

    return RowSource(name, list(columns), rows(), [])
