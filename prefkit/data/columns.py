"""Column maps: read files whose columns have other names (``data.columns.chosen=answer_good``).

A column map is ``{prefkit column: file column}``. Renaming happens when rows are read, before
any check, so every rule of ``docs/data.md`` applies to the renamed columns; errors about a
renamed column name the file's column too.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

COLUMNS: tuple[str, ...] = (
    "prompt",
    "chosen",
    "rejected",
    "label",
    "margin",
    "weight",
    "annotator",
    "responses",
    "scores",
    "completion",
)
"""Every column a prefkit reader knows (pairs, ranked lists, prompts, unpaired feedback)."""


def check_column_map(columns: Mapping[str, Any]) -> None:
    """A column map's keys are prefkit columns, its values distinct non-empty column names."""
    if not isinstance(columns, Mapping):
        raise ValueError(f"data.columns must be a mapping {{prefkit column: file column}}, got {columns!r}")
    seen: dict[str, str] = {}
    for key, value in columns.items():
        if key not in COLUMNS:
            raise ValueError(f"data.columns.{key}: not a prefkit column (known: {', '.join(COLUMNS)})")
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"data.columns.{key} must be a column name, got {value!r}")
        if value in seen:
            raise ValueError(f"data.columns.{key} and data.columns.{seen[value]} both name column {value!r}")
        seen[value] = key


def renamed_columns(columns: list[str], mapping: Mapping[str, str], file: str) -> list[str]:
    """The columns as prefkit reads them; every mapped column must exist, and no unmapped
    column may already carry a name the map writes (two columns would become one)."""
    from prefkit.data.report import FileContentError

    listed = ", ".join(columns) or "none"
    for key, column in mapping.items():
        if column not in columns:
            raise FileContentError(
                f"data.columns.{key} names column '{column}', which is not there (columns: {listed})",
                file=file,
                field=f"data.columns.{key}",
            )
    sources = set(mapping.values())
    for key in mapping:
        if key in columns and key not in sources:
            raise FileContentError(
                f"data.columns.{key} maps '{mapping[key]}' to '{key}', but the file also has a '{key}' "
                "column; map that one to another name or drop it",
                file=file,
                field=f"data.columns.{key}",
            )
    inverse = {column: key for key, column in mapping.items()}
    return [inverse.get(c, c) for c in columns]


OPTIONAL = ("label", "margin", "weight", "annotator")
"""Columns a row may lack (absent is null); a mapped column of another kind must be in every row."""


def rename_row(row: dict[str, Any], mapping: Mapping[str, str], file: str, line: int) -> dict[str, Any] | Any:
    """One row with the map applied (unmapped columns keep their names), or a ``RowError``
    when the row lacks a mapped column or already has a column the map writes."""
    from prefkit.data.report import RowError

    inverse = {column: key for key, column in mapping.items()}
    for key, column in mapping.items():
        if key in row and key not in inverse:
            return RowError(file, line, key, f"has a '{key}' column and data.columns.{key} maps '{column}' to it")
        if column not in row and key not in OPTIONAL:
            return RowError(file, line, column, f"missing column '{column}' (data.columns.{key})")
    return {inverse.get(k, k): v for k, v in row.items()}


def renamed_rows(rows: Iterator[tuple[int, Any]], mapping: Mapping[str, str], file: str,
                 check_first: bool) -> Iterator[tuple[int, Any]]:
    """Rows with the map applied; ``check_first`` checks the map against the first object row
    (JSONL, whose columns are not known up front): a map naming a column that row lacks is a
    file-level error."""
    checked = not check_first
    for line, row in rows:
        if isinstance(row, dict):
            if not checked:
                from prefkit.data.report import FileContentError

                try:
                    renamed_columns(list(row), mapping, file)
                except FileContentError as err:
                    raise FileContentError(err.reason, file=file, line=line, field=err.field) from None
                checked = True
            row = rename_row(row, mapping, file, line)
        yield line, row
