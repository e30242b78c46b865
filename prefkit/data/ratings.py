"""Graded feedback: ratings of responses on a declared scale (UltraFeedback-style 1-10, Likert 1-5).

Two row forms (JSONL, Parquet, a ``datasets.Dataset`` or a ``save_to_disk`` folder):

- **rated lists** ``{"prompt", "completions": [K responses], "ratings": [K numbers]}`` ->
  :class:`RatingsRecord` (optional ``annotator``);
- **single ratings** ``{"prompt", "completion", "rating"}`` -> :class:`RatingRecord` (optional
  ``annotator``).

:func:`read_ratings` reads either (the form is detected from the columns) and checks every row:
a rating list whose length differs from the completions, a rating that is not a finite number,
outside the declared ``scale=(low, high)`` or (with ``integer=True``) not a whole number, an
empty completion, a missing prompt: each an error naming file, line and field; every invalid row
is found, and ``skip_invalid=True`` drops and lists them instead (``report.skipped``). Without a
declared scale the observed range is reported as a warning, so a 0-1 file read as 1-10 does not go
unnoticed. :func:`scan_rows` is the shared row loop (also used by ``prefkit.data.critiques``).
Binarisation into pairs and lists is ``prefkit.data.binarize``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

from prefkit.data._fields import RowProblem, is_empty, parse_number, parse_text, type_name
from prefkit.data._sources import FileContentError, open_source, row_bytes, row_too_long
from prefkit.data.readers import MAX_ROW_BYTES
from prefkit.data.records import ListRecord, Source, Text
from prefkit.data.report import InvalidRowsError, ReadReport, RowError

Scale = tuple[float, float]


@dataclass(frozen=True)
class RatingsRecord:
    """A prompt with K rated completions (higher is better), e.g. one UltraFeedback row."""

    prompt: Text
    completions: list[Text]
    ratings: list[float]
    annotator: str | None = None
    source: Source | None = field(default=None, compare=False)

    def to_json(self) -> dict[str, Any]:
        row: dict[str, Any] = {"prompt": self.prompt, "completions": self.completions, "ratings": self.ratings}
        if self.annotator is not None:
            row["annotator"] = self.annotator
        return row

    def to_list(self) -> ListRecord:
        """The same row as a ranked list (``responses``/``scores``) for the listwise losses."""
        return ListRecord(self.prompt, list(self.completions), [float(r) for r in self.ratings], source=self.source)


@dataclass(frozen=True)
class RatingRecord:
    """One rated completion (the single-response form)."""

    prompt: Text
    completion: Text
    rating: float
    annotator: str | None = None
    source: Source | None = field(default=None, compare=False)

    def to_json(self) -> dict[str, Any]:
        row: dict[str, Any] = {"prompt": self.prompt, "completion": self.completion, "rating": self.rating}
        if self.annotator is not None:
            row["annotator"] = self.annotator
        return row


RATINGS_COLUMNS = ("prompt", "completions", "ratings", "annotator")
RATING_COLUMNS = ("prompt", "completion", "rating", "annotator")


def ratings_kind(columns: set[str]) -> str | None:
    """``"ratings"`` (rated lists), ``"rating"`` (single ratings) or ``None`` for other columns."""
    if {"completions", "ratings"} & columns:
        return "ratings"
    if "rating" in columns:
        return "rating"
    return None


def check_scale(scale: Scale | None) -> Scale | None:
    if scale is None:
        return None
    low, high = (float(scale[0]), float(scale[1]))
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise ValueError(f"a rating scale needs finite low < high, got {scale!r}")
    return low, high


def parse_scale(text: str) -> Scale:
    """``"1-10"`` or ``"1,10"`` (``"-2,2"`` for negative bounds) -> ``(1.0, 10.0)``."""
    parts = text.split(",") if "," in text else text.split("-")
    try:
        low, high = (float(p) for p in parts)
    except ValueError:
        raise ValueError(f"a rating scale is LOW-HIGH or LOW,HIGH (e.g. 1-5, 1-10, -2,2), got {text!r}") from None
    return check_scale((low, high))  # type: ignore[return-value]


def _rating(value: Any, name: str, scale: Scale | None, integer: bool) -> float:
    number = parse_number(value, name)
    if scale is not None and not scale[0] <= number <= scale[1]:
        raise RowProblem(name, f"is {number:g}, outside the declared scale {scale[0]:g}..{scale[1]:g}")
    if integer and number != int(number):
        raise RowProblem(name, f"is {number:g}, not a whole number (integer ratings were asked for)")
    return number


def _annotator(row: dict[str, Any]) -> str | None:
    value = row.get("annotator")
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise RowProblem("annotator", f"must be a string or an integer id, got {type_name(value)}")


def _prompt(row: dict[str, Any]) -> Text:
    if "prompt" not in row:
        raise RowProblem("prompt", "missing column 'prompt'")
    prompt = parse_text(row["prompt"], "prompt")
    if is_empty(prompt):
        raise RowProblem("prompt", "is empty: a rating needs the prompt it answers")
    return prompt


def parse_ratings_row(row: dict[str, Any], source: Source, *, scale: Scale | None = None,
                      integer: bool = False) -> RatingsRecord:
    for column in ("completions", "ratings"):
        if column not in row:
            raise RowProblem(column, f"missing column '{column}'")
    completions, ratings = row["completions"], row["ratings"]
    if not isinstance(completions, list) or not completions:
        raise RowProblem("completions", f"must be a non-empty list of responses, got {type_name(completions)}")
    if not isinstance(ratings, list):
        raise RowProblem("ratings", f"must be a list of numbers, got {type_name(ratings)}")
    if len(ratings) != len(completions):
        raise RowProblem("ratings", f"has {len(ratings)} ratings for {len(completions)} completions; "
                                    "give one rating per completion")
    texts = [parse_text(c, f"completions[{i}]") for i, c in enumerate(completions)]
    for i, text in enumerate(texts):
        if is_empty(text):
            raise RowProblem(f"completions[{i}]", "is empty: a rated completion must have content")
    values = [_rating(r, f"ratings[{i}]", scale, integer) for i, r in enumerate(ratings)]
    return RatingsRecord(_prompt(row), texts, values, _annotator(row), source)


def parse_rating_row(row: dict[str, Any], source: Source, *, scale: Scale | None = None,
                     integer: bool = False) -> RatingRecord:
    for column in ("completion", "rating"):
        if column not in row:
            raise RowProblem(column, f"missing column '{column}'")
    completion = parse_text(row["completion"], "completion")
    if is_empty(completion):
        raise RowProblem("completion", "is empty: a rated completion must have content")
    rating = _rating(row["rating"], "rating", scale, integer)
    return RatingRecord(_prompt(row), completion, rating, _annotator(row), source)


def _key(record: Any) -> Hashable:
    """Everything a record holds (not where it came from): equal keys are exact duplicates."""
    return json.dumps(record.to_json(), sort_keys=True, ensure_ascii=False)


def scan_rows(data: Any, parse: Callable[[dict[str, Any], Source], Any], *, kind: str, columns: tuple[str, ...],
              required: tuple[str, ...], skip_invalid: bool = False, dedupe: bool = False,
              max_row_bytes: int | None = MAX_ROW_BYTES) -> tuple[list[Any], ReadReport]:
    """Read every row of ``data`` with ``parse(row, (file, line))``; collect every problem.

    Exact duplicate rows are errors (``dedupe=True`` drops and counts them); columns outside
    ``columns`` are reported as ignored; a columnar source lacking a ``required`` column fails once.
    A row longer than ``max_row_bytes`` (a JSONL line, or a columnar row's text) is invalid and not
    parsed (``None``: no limit). Returns the records and the report (invalid rows in
    ``report.errors``, or ``report.skipped`` with ``skip_invalid``); raise with :func:`finish`.
    """
    if max_row_bytes is not None and max_row_bytes <= 0:
        raise ValueError(f"max_row_bytes must be positive or None (no limit), got {max_row_bytes}")
    source = open_source(data, max_row_bytes=max_row_bytes)
    report = ReadReport(file=source.file, kind=kind)  # type: ignore[arg-type]
    if source.columns is not None:
        for column in required:
            if column not in source.columns:
                raise FileContentError(f"missing column '{column}' (columns: {', '.join(source.columns)})",
                                       file=source.file, field=column)
    ignored: set[str] = set(c for c in (source.columns or []) if c not in columns)
    records: list[Any] = []
    first_line: dict[Hashable, int] = {}
    for line, row in source.rows:
        report.rows += 1
        if isinstance(row, RowError):
            report.errors.append(row)
            continue
        if source.columns is None:
            ignored.update(k for k in row if k not in columns)
        try:
            if max_row_bytes is not None and source.columns is not None and (size := row_bytes(row)) > max_row_bytes:
                raise RowProblem(None, row_too_long(size, max_row_bytes))
            record = parse(row, (source.file, line))
            key = _key(record)
            if key in first_line:
                report.duplicates += 1
                if dedupe:
                    continue
                raise RowProblem(None, f"exact duplicate of line {first_line[key]} (dedupe=True / --dedupe drops "
                                       "repeats and counts them)")
            first_line[key] = line
            records.append(record)
        except RowProblem as problem:
            report.errors.append(RowError(source.file, line, problem.field, problem.reason))
    if report.rows == 0:
        raise FileContentError("file is empty: no rows", file=source.file)
    if skip_invalid:
        report.skipped, report.errors = report.errors, []
    report.kept = len(records)
    report.blank_lines = len(source.blank_lines)
    report.ignored_columns = sorted(ignored)
    if report.ignored_columns:
        report.warnings.append(f"ignored columns: {', '.join(report.ignored_columns)}")
    return records, report


def finish(records: list[Any], report: ReadReport) -> tuple[list[Any], ReadReport]:
    """Raise :class:`InvalidRowsError` for invalid rows, or a clear error when nothing is kept."""
    if report.errors:
        raise InvalidRowsError(report)
    if not records:
        first = f"; first: {report.skipped[0]}" if report.skipped else ""
        raise FileContentError(f"no valid rows: all {report.rows} rows were skipped as invalid{first}",
                               file=report.file)
    return records, report


def _columns_of(data: Any) -> set[str]:
    source = open_source(data)
    if source.columns is not None:
        return set(source.columns)
    for _, row in source.rows:
        if isinstance(row, dict):
            return set(row)
    return set()


def detect_feedback_kind(data: Any) -> str | None:
    """``"ratings"``, ``"rating"`` or ``"critiques"`` for the graded and language-feedback forms of
    this module and ``prefkit.data.critiques``; ``None`` for anything else (pairs, lists, prompts)."""
    columns = _columns_of(data)
    if columns & {"chosen", "rejected", "responses", "scores"}:
        return None  # pairs or lists (which may carry a critique column, e.g. studio exports)
    if "critique" in columns:
        return "critiques"
    return ratings_kind(columns)


def scan_ratings(data: Any, *, scale: Scale | None = None, integer: bool = False, skip_invalid: bool = False,
                 dedupe: bool = False, max_row_bytes: int | None = MAX_ROW_BYTES
                 ) -> tuple[list[RatingsRecord] | list[RatingRecord], ReadReport]:
    """The rows and report of a ratings file without raising for invalid rows (see :func:`read_ratings`)."""
    scale = check_scale(scale)
    kind = ratings_kind(_columns_of(data))
    if kind is None:
        source = open_source(data)
        raise FileContentError("not a ratings file: expected prompt/completions/ratings (rated lists) or "
                               "prompt/completion/rating (single ratings)", file=source.file)
    if kind == "ratings":
        def parse(row: dict[str, Any], where: Source) -> Any:
            return parse_ratings_row(row, where, scale=scale, integer=integer)

        records, report = scan_rows(data, parse, kind="ratings", columns=RATINGS_COLUMNS,
                                    required=("completions", "ratings"), skip_invalid=skip_invalid, dedupe=dedupe,
                                    max_row_bytes=max_row_bytes)
        values = [v for r in records for v in r.ratings]
        report.ties = sum(len(set(r.ratings)) < len(r.ratings) for r in records)
    else:
        def parse(row: dict[str, Any], where: Source) -> Any:
            return parse_rating_row(row, where, scale=scale, integer=integer)

        records, report = scan_rows(data, parse, kind="rating", columns=RATING_COLUMNS,
                                    required=("completion", "rating"), skip_invalid=skip_invalid, dedupe=dedupe,
                                    max_row_bytes=max_row_bytes)
        values = [r.rating for r in records]
    if values:
        observed = f"ratings {min(values):g}..{max(values):g}"
        if scale is None:
            report.warnings.append(f"no rating scale declared (observed {observed}); declare it (scale=(low, high), "
                                   "--scale LOW-HIGH) to check every rating against it")
        else:
            report.warnings.append(f"declared scale {scale[0]:g}..{scale[1]:g}, observed {observed}")
    return records, report


def read_ratings(data: Any, *, scale: Scale | None = None, integer: bool = False, skip_invalid: bool = False,
                 dedupe: bool = False, max_row_bytes: int | None = MAX_ROW_BYTES
                 ) -> tuple[list[RatingsRecord] | list[RatingRecord], ReadReport]:
    """Ratings from a file or Dataset: :class:`RatingsRecord` rows (``prompt``, ``completions``,
    ``ratings``) or :class:`RatingRecord` rows (``prompt``, ``completion``, ``rating``).

    Args:
        scale: the declared ``(low, high)`` scale; a rating outside it is an invalid row.
        integer: ratings must be whole numbers (ordinal models need classes).
        skip_invalid: drop invalid rows (listed in ``report.skipped``) instead of raising.
        dedupe: drop exact repeats of an earlier row (counted) instead of treating them as errors.
        max_row_bytes: a longer row is invalid and never parsed (``data.max_row_bytes``).

    Raises:
        InputError: the file cannot be used; ``InvalidRowsError`` when rows are invalid.
    """
    return finish(*scan_ratings(data, scale=scale, integer=integer, skip_invalid=skip_invalid, dedupe=dedupe,
                                max_row_bytes=max_row_bytes))


def validate_ratings(data: Any, *, scale: Scale | None = None, integer: bool = False,
                     skip_invalid: bool = False, dedupe: bool = False) -> ReadReport:
    """The full report of a ratings file, never raising for bad content (``prefkit validate``)."""
    try:
        return scan_ratings(data, scale=scale, integer=integer, skip_invalid=skip_invalid, dedupe=dedupe)[1]
    except FileContentError as err:
        report = ReadReport(file=err.file or str(data))
        report.errors.append(RowError(report.file, err.line, err.field, err.reason))
        return report
