"""What a reader found in a feedback file: counts, problems and warnings, never silent."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from prefkit.errors import InputError


class FileContentError(InputError):
    """The file opens but its content as a whole is unusable (empty, unknown columns, ...)."""

Kind = Literal["pairs", "lists", "prompts", "unpaired", "ratings", "rating", "critiques"]

MAX_LISTED = 50
"""How many problems an error message or a printed report lists before summarising the rest."""


@dataclass(frozen=True)
class RowError:
    """One invalid row: where it is (file, 1-based line or Parquet row, field) and why."""

    file: str
    line: int | None
    field: str | None
    reason: str

    def __str__(self) -> str:
        return str(self.to_input_error())

    def to_input_error(self) -> InputError:
        return InputError(self.reason, file=self.file, line=self.line, field=self.field)

    def to_json(self) -> dict[str, Any]:
        return {"line": self.line, "field": self.field, "reason": self.reason}


@dataclass(frozen=True)
class LengthStats:
    """Token-length summary of a list of sequence lengths."""

    count: int
    min: int
    mean: float
    median: float
    p95: float
    max: int

    @classmethod
    def of(cls, lengths: list[int]) -> LengthStats | None:
        if not lengths:
            return None
        ordered = sorted(lengths)
        n = len(ordered)
        return cls(
            count=n,
            min=ordered[0],
            mean=sum(ordered) / n,
            median=_quantile(ordered, 0.5),
            p95=_quantile(ordered, 0.95),
            max=ordered[-1],
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "min": self.min,
            "mean": round(self.mean, 2),
            "median": round(self.median, 2),
            "p95": round(self.p95, 2),
            "max": self.max,
        }


def _quantile(ordered: list[int], q: float) -> float:
    """Linear-interpolation quantile (numpy's default method) of an ascending list."""
    pos = q * (len(ordered) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return float(ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo))


@dataclass
class ReadReport:
    """Everything a reader saw in one file.

    ``rows`` counts data rows read (blank JSONL lines are not rows; they are counted in
    ``blank_lines``); ``kept`` counts records returned. Invalid rows are ``errors`` (the reader
    raises) or, with ``skip_invalid=True``, ``skipped`` (each with file, line, field, reason).
    ``duplicates`` counts exact repeats of an earlier row (errors unless ``dedupe=True``, in
    which case they are dropped and only counted). ``ties`` counts rows with a tie (pair label
    0.5, or two equal scores in a list). ``contradictions`` counts pairs whose preferred side
    disagrees with an earlier row on the same prompt and the same two responses (a warning:
    annotators disagree). ``truncated`` lists the lines of rows longer than ``max_length`` that
    the trainer will truncate.
    """

    file: str
    kind: Kind | None = None
    rows: int = 0
    kept: int = 0
    errors: list[RowError] = field(default_factory=list)
    skipped: list[RowError] = field(default_factory=list)
    ties: int = 0
    duplicates: int = 0
    contradictions: int = 0
    implicit_prompts: int = 0
    empty_prompts: int = 0
    blank_lines: int = 0
    truncated: list[int] = field(default_factory=list)
    ignored_columns: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    max_length: int | None = None
    tokenizer: str | None = None
    prompt_tokens: LengthStats | None = None
    sequence_tokens: LengthStats | None = None

    @property
    def valid(self) -> bool:
        """No errors and at least one usable record."""
        return not self.errors and self.kept > 0

    def error_summary(self) -> str:
        """The first error and how many more there are, as one message."""
        first = str(self.errors[0])
        more = len(self.errors) - 1
        if more:
            first += (
                f" (and {more} more invalid row{'s' if more > 1 else ''}; "
                f"`prefkit validate --data {self.file}` lists them all; "
                "data.skip_invalid=true (validate --skip-invalid) skips and counts them)"
            )
        return first

    def to_json(self, max_listed: int | None = MAX_LISTED) -> dict[str, Any]:
        def listed(items: list[Any]) -> list[Any]:
            return items if max_listed is None else items[:max_listed]

        return {
            "file": self.file,
            "kind": self.kind,
            "rows": self.rows,
            "kept": self.kept,
            "valid": self.valid,
            "n_errors": len(self.errors),
            "errors": [e.to_json() for e in listed(self.errors)],
            "n_skipped": len(self.skipped),
            "skipped": [e.to_json() for e in listed(self.skipped)],
            "ties": self.ties,
            "duplicates": self.duplicates,
            "contradictions": self.contradictions,
            "implicit_prompts": self.implicit_prompts,
            "empty_prompts": self.empty_prompts,
            "blank_lines": self.blank_lines,
            "max_length": self.max_length,
            "too_long": len(self.truncated),
            "too_long_lines": listed(self.truncated),
            "ignored_columns": self.ignored_columns,
            "warnings": listed(self.warnings),
            "tokenizer": self.tokenizer,
            "tokens": {
                "prompt": self.prompt_tokens.to_json() if self.prompt_tokens else None,
                "sequence": self.sequence_tokens.to_json() if self.sequence_tokens else None,
            },
        }


class InvalidRowsError(InputError):
    """A file has invalid rows: names the first (file, line, field) and counts the rest.

    ``errors`` holds every invalid row and ``report`` the full :class:`ReadReport`.
    """

    def __init__(self, report: ReadReport) -> None:
        first = report.errors[0]
        super().__init__(first.reason, file=first.file, line=first.line, field=first.field)
        self.args = (report.error_summary(),)
        self.errors = list(report.errors)
        self.report = report

    def __str__(self) -> str:
        return self.report.error_summary()
