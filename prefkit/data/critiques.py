"""Language feedback: a critique of one response (ILF's ``(x, y0, f)``; Chain of Hindsight's text).

Row form: ``{"prompt", "completion", "critique"}`` with optional ``issues`` (a list of short issue
names, e.g. ``["off_topic", "too_long"]``, as the simulated world writes them) and ``annotator``.
:func:`read_critiques` checks every row; an **empty critique** (blank text) is an invalid row —
a refiner given no feedback can only copy the response, and a hindsight template would teach
nothing — as are a missing prompt, an empty completion and issues that are not a list of strings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from prefkit.data._fields import RowProblem, is_empty, parse_text, type_name
from prefkit.data._sources import FileContentError
from prefkit.data.ratings import MAX_ROW_BYTES, finish, scan_rows
from prefkit.data.records import Source, Text
from prefkit.data.report import ReadReport, RowError

CRITIQUE_COLUMNS = ("prompt", "completion", "critique", "issues", "annotator")


@dataclass(frozen=True)
class CritiqueRecord:
    """A prompt, a response and natural-language feedback on it."""

    prompt: Text
    completion: Text
    critique: str
    issues: list[str] | None = None
    annotator: str | None = None
    source: Source | None = field(default=None, compare=False)

    def to_json(self) -> dict[str, Any]:
        row: dict[str, Any] = {"prompt": self.prompt, "completion": self.completion, "critique": self.critique}
        if self.issues is not None:
            row["issues"] = list(self.issues)
        if self.annotator is not None:
            row["annotator"] = self.annotator
        return row


def parse_critique_row(row: dict[str, Any], source: Source) -> CritiqueRecord:
    for column in ("prompt", "completion", "critique"):
        if column not in row:
            raise RowProblem(column, f"missing column '{column}'")
    prompt = parse_text(row["prompt"], "prompt")
    if is_empty(prompt):
        raise RowProblem("prompt", "is empty: a critique needs the prompt the response answers")
    completion = parse_text(row["completion"], "completion")
    if is_empty(completion):
        raise RowProblem("completion", "is empty: there is no response to critique")
    critique = row["critique"]
    if not isinstance(critique, str):
        raise RowProblem("critique", f"must be a string, got {type_name(critique)}")
    if not critique.strip():
        raise RowProblem("critique", "is empty: language feedback needs text (write e.g. 'no issues' for a "
                                     "response that needs no change, or drop the row)")
    issues = row.get("issues")
    if issues is not None and (not isinstance(issues, list) or not all(isinstance(i, str) for i in issues)):
        raise RowProblem("issues", f"must be a list of strings, got {type_name(issues)}")
    annotator = row.get("annotator")
    if annotator is not None and not isinstance(annotator, str):
        raise RowProblem("annotator", f"must be a string, got {type_name(annotator)}")
    return CritiqueRecord(prompt, completion, critique, issues, annotator, source)


def scan_critiques(data: Any, *, skip_invalid: bool = False, dedupe: bool = False,
                   max_row_bytes: int | None = MAX_ROW_BYTES) -> tuple[list[CritiqueRecord], ReadReport]:
    return scan_rows(data, parse_critique_row, kind="critiques", columns=CRITIQUE_COLUMNS,
                     required=("prompt", "completion", "critique"), skip_invalid=skip_invalid, dedupe=dedupe,
                     max_row_bytes=max_row_bytes)


def read_critiques(data: Any, *, skip_invalid: bool = False, dedupe: bool = False,
                   max_row_bytes: int | None = MAX_ROW_BYTES) -> tuple[list[CritiqueRecord], ReadReport]:
    """Critiques from a JSONL/Parquet file or a Dataset; invalid rows raise ``InvalidRowsError``
    naming file, line and field (``skip_invalid=True`` drops and lists them; a row longer than
    ``max_row_bytes`` is invalid)."""
    return finish(*scan_critiques(data, skip_invalid=skip_invalid, dedupe=dedupe, max_row_bytes=max_row_bytes))


def validate_critiques(data: Any, *, skip_invalid: bool = False, dedupe: bool = False) -> ReadReport:
    """The full report of a critiques file, never raising for bad content (``prefkit validate``)."""
    try:
        return scan_critiques(data, skip_invalid=skip_invalid, dedupe=dedupe)[1]
    except FileContentError as err:
        report = ReadReport(file=err.file or str(data))
        report.errors.append(RowError(report.file, err.line, err.field, err.reason))
        return report
