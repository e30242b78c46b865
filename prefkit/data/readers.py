"""Reading and validating feedback files: pairs, ranked lists and prompts.

Formats (docs/data.md has the full rules):

- pairs: TRL's ``prompt``/``chosen``/``rejected`` (strings, or lists of ``{"role", "content"}``
  messages), optional ``label`` (P(chosen beats rejected), 0.5 a tie), ``margin``, ``weight``,
  ``annotator``; without a ``prompt`` column, TRL's implicit prompt (the shared prefix of
  ``chosen`` and ``rejected``) is split out;
- lists: ``prompt``, ``responses`` (K >= 2), ``scores`` (K numbers, higher is better);
- prompts: ``prompt`` only, for online training;
- unpaired: TRL's ``prompt``/``completion``/``label`` (true: desirable), for KTO-style losses.

Every invalid row is found (not only the first): the readers raise one
:class:`~prefkit.data.report.InvalidRowsError` naming the first (file, line, field) and
counting the rest, or, with ``skip_invalid=True``, drop them and list them in
``report.skipped``. :func:`validate` returns the report without raising.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable, Hashable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

from prefkit.data._fields import (
    RowProblem,
    canonical,
    check_response_roles,
    is_conversation,
    is_empty,
    parse_number,
    parse_text,
    split_implicit_prompt,
    type_name,
)
from prefkit.data._sources import FileContentError, RowSource, open_source, row_bytes, row_too_long
from prefkit.data.lengths import over_length
from prefkit.data.records import ListRecord, PairRecord, PromptRecord, Text, UnpairedRecord
from prefkit.data.report import InvalidRowsError, Kind, LengthStats, ReadReport, RowError
from prefkit.data.tokens import TokenCounter, as_counter, render_plain

Truncation = Literal["truncate", "error"]
Record = PairRecord | ListRecord | PromptRecord | UnpairedRecord

PAIR_COLUMNS = ("prompt", "chosen", "rejected", "label", "margin", "weight", "annotator")
LIST_COLUMNS = ("prompt", "responses", "scores")
PROMPT_COLUMNS = ("prompt",)
UNPAIRED_COLUMNS = ("prompt", "completion", "label", "weight", "annotator")
KNOWN_COLUMNS: dict[Kind, tuple[str, ...]] = {
    "pairs": PAIR_COLUMNS,
    "lists": LIST_COLUMNS,
    "prompts": PROMPT_COLUMNS,
    "unpaired": UNPAIRED_COLUMNS,
}
DESCRIBE: dict[Kind, str] = {
    "pairs": "pairs (prompt, chosen, rejected)",
    "lists": "ranked lists (prompt, responses, scores)",
    "prompts": "prompts (prompt only)",
    "unpaired": "unpaired feedback (prompt, completion, label)",
}
HINTS: dict[tuple[Kind, Kind], str] = {
    ("pairs", "unpaired"): "; unpaired rows train KTO-style losses (kto, bco_unpaired, apo_zero_unpaired)",
    ("unpaired", "pairs"): "; to train an unpaired loss on pairs, set data.unpair=true (each pair becomes a "
                           "desirable and an undesirable row; in Python: read_unpaired(..., split_pairs=True))",
}


def detect_kind(columns: Iterable[str]) -> Kind:
    """The kind of feedback a set of columns holds; :class:`FileContentError` if none fits."""
    names = set(columns)
    if names & {"chosen", "rejected"}:
        return "pairs"
    if names & {"responses", "scores"}:
        return "lists"
    listed = ", ".join(sorted(names)) or "none"
    if {"completion", "label"} <= names:
        return "unpaired"
    if names & {"completions", "ratings", "rating"}:
        raise FileContentError(
            f"this is a ratings file (graded feedback; columns: {listed}), not pairs, lists or prompts: train an "
            "ordinal reward model on it (`prefkit rm train --kind ordinal --scale LOW-HIGH`), or turn it into "
            "pairs or lists first (`prefkit data binarize --data FILE --out PAIRS`)"
        )
    if "critique" in names:
        raise FileContentError(
            f"this is a critiques file (language feedback; columns: {listed}), not pairs, lists or prompts: "
            "train on it with `prefkit train --method ilf` (refine -> select -> SFT)"
        )
    if "prompt" in names:
        return "prompts"
    if names & {"text", "messages", "completion"}:
        raise FileContentError(
            f"language-modelling or completion data (columns: {listed}) carries no preference: "
            "expected prompt/chosen/rejected, prompt/responses/scores, or prompt"
        )
    raise FileContentError(
        f"no known columns (columns: {listed}): expected prompt/chosen/rejected (pairs), "
        "prompt/responses/scores (ranked lists) or prompt (prompts)"
    )


MAX_ROW_BYTES = 16 * 1024 * 1024
"""Default limit on one row's size (``data.max_row_bytes``): 16 MiB of text is about 4M tokens,
four times the longest context windows in use, so a longer row is almost surely a broken file
(a missing newline, a whole file pasted into a cell) rather than an example to train on; it is
refused before any work on it instead of costing gigabytes of memory."""


@dataclass(frozen=True)
class _Options:
    skip_invalid: bool = False
    allow_ties: bool = True
    dedupe: bool = False
    max_length: int | None = None
    truncation: Truncation = "truncate"
    counter: TokenCounter | None = None
    max_row_bytes: int | None = MAX_ROW_BYTES


def _text_key(text: Text) -> Hashable:
    """An exact, hashable stand-in for a text (strings are shared, not copied)."""
    if isinstance(text, str):
        return text
    return tuple(tuple(sorted(m.items())) for m in text)


def _row_key(record: Any) -> tuple[Hashable, ...]:
    """Everything a record holds (not where it came from): equal keys are exact duplicates."""
    if isinstance(record, PairRecord):
        return (
            _text_key(record.prompt), _text_key(record.chosen), _text_key(record.rejected),
            record.label, record.margin, record.weight, record.annotator,
        )
    if isinstance(record, ListRecord):
        return (_text_key(record.prompt), tuple(map(_text_key, record.responses)), tuple(record.scores))
    if isinstance(record, UnpairedRecord):
        return (_text_key(record.prompt), _text_key(record.completion), record.label, record.weight,
                record.annotator)
    return (_text_key(record.prompt),)


def _fingerprint(text: str) -> bytes:
    """A 16-byte hash of a (canonical) text, to remember many texts in little memory."""
    return hashlib.blake2b(text.encode(), digest_size=16).digest()


def _optional(row: dict[str, Any], name: str) -> Any:
    """An optional column's value; absent and null are the same (Parquet stores absent as null)."""
    return row.get(name)


def _check_formats(texts: list[tuple[str, Text]]) -> None:
    """All texts of a row are strings, or all are message lists (TRL standard vs conversational)."""
    def kind_of(text: Text) -> str:
        return "a message list" if is_conversation(text) else "a string"

    first_name, first = texts[0]
    for name, text in texts[1:]:
        if is_conversation(text) != is_conversation(first):
            raise RowProblem(
                name,
                f"is {kind_of(text)} but {first_name} is {kind_of(first)}: a row is all strings "
                "or all message lists (to split a shared conversation prefix as the prompt, "
                "drop the prompt column)",
            )


def _responses_after_prompt(prompt: Text, named: list[tuple[str, Text]]) -> None:
    """With a prompt column, conversational responses hold only the response turns."""
    if not isinstance(prompt, list) or not prompt:
        return
    for name, text in named:
        if isinstance(text, list) and text[: len(prompt)] == prompt:
            raise RowProblem(
                name,
                "starts with the prompt's messages: with a prompt column, it must hold only the "
                "response turns (drop the prompt column to split the shared prefix instead)",
            )



def _annotator(row: dict[str, Any]) -> str | None:
    """The optional ``annotator`` column: a string, or an integer id read as its string."""
    annotator = _optional(row, "annotator")
    if annotator is None or isinstance(annotator, str):
        return annotator
    if isinstance(annotator, int) and not isinstance(annotator, bool):
        return str(annotator)
    raise RowProblem("annotator", f"must be a string or an integer id, got {type_name(annotator)}")

def _parse_pair(row: dict[str, Any], source: tuple[str, int]) -> tuple[PairRecord, bool]:
    for column in ("chosen", "rejected"):
        if column not in row:
            raise RowProblem(column, f"missing column '{column}'")
    chosen = parse_text(row["chosen"], "chosen")
    rejected = parse_text(row["rejected"], "rejected")
    _check_formats([("chosen", chosen), ("rejected", rejected)])
    implicit = "prompt" not in row
    if implicit:
        prompt, (chosen, rejected) = split_implicit_prompt([chosen, rejected])
    else:
        prompt = parse_text(row["prompt"], "prompt")
        _check_formats([("prompt", prompt), ("chosen", chosen), ("rejected", rejected)])
        _responses_after_prompt(prompt, [("chosen", chosen), ("rejected", rejected)])
    for name, text in (("chosen", chosen), ("rejected", rejected)):
        if is_empty(text):
            after = " after splitting off the shared prompt" if implicit else ""
            raise RowProblem(name, f"is empty{after}: a response must have content")
    shared = len(prompt) if implicit and isinstance(prompt, list) else 0
    for name, text in (("chosen", chosen), ("rejected", rejected)):
        check_response_roles(text, name, first_index=shared)
    if canonical(chosen) == canonical(rejected):
        raise RowProblem(
            "rejected", "is identical to chosen (ignoring whitespace): the pair carries no preference"
        )
    label = _optional(row, "label")
    margin = _optional(row, "margin")
    weight = _optional(row, "weight")
    annotator = _annotator(row)
    record = PairRecord(
        prompt=prompt,
        chosen=chosen,
        rejected=rejected,
        label=1.0 if label is None else parse_number(label, "label", low=0.0, high=1.0),
        margin=None if margin is None else parse_number(margin, "margin", low=0.0),
        weight=None if weight is None else parse_number(weight, "weight", low=0.0),
        annotator=annotator,
        source=source,
    )
    return record, implicit


def _parse_list(row: dict[str, Any], source: tuple[str, int]) -> tuple[ListRecord, bool]:
    for column in ("responses", "scores"):
        if column not in row:
            raise RowProblem(column, f"missing column '{column}'")
    raw_responses, raw_scores = row["responses"], row["scores"]
    if not isinstance(raw_responses, list):
        raise RowProblem("responses", f"must be a list of responses, got {type_name(raw_responses)}")
    if len(raw_responses) < 2:
        raise RowProblem("responses", f"needs at least 2 responses to rank, got {len(raw_responses)}")
    responses = [parse_text(r, f"responses[{i}]") for i, r in enumerate(raw_responses)]
    _check_formats([(f"responses[{i}]", r) for i, r in enumerate(responses)])
    if not isinstance(raw_scores, list):
        raise RowProblem("scores", f"must be a list of numbers, got {type_name(raw_scores)}")
    if len(raw_scores) != len(responses):
        raise RowProblem("scores", f"has {len(raw_scores)} scores for {len(responses)} responses")
    scores = [parse_number(s, f"scores[{i}]") for i, s in enumerate(raw_scores)]
    implicit = "prompt" not in row
    if implicit:
        prompt, responses = split_implicit_prompt(responses)
    else:
        prompt = parse_text(row["prompt"], "prompt")
        _check_formats([("prompt", prompt), ("responses[0]", responses[0])])
        _responses_after_prompt(prompt, [(f"responses[{i}]", r) for i, r in enumerate(responses)])
    for i, response in enumerate(responses):
        if is_empty(response):
            after = " after splitting off the shared prompt" if implicit else ""
            raise RowProblem(f"responses[{i}]", f"is empty{after}: a response must have content")
    shared = len(prompt) if implicit and isinstance(prompt, list) else 0
    for i, response in enumerate(responses):
        check_response_roles(response, f"responses[{i}]", first_index=shared)
    return ListRecord(prompt=prompt, responses=responses, scores=scores, source=source), implicit


def _parse_prompt(row: dict[str, Any], source: tuple[str, int]) -> tuple[PromptRecord, bool]:
    if "prompt" not in row:
        raise RowProblem("prompt", "missing column 'prompt'")
    prompt = parse_text(row["prompt"], "prompt")
    if is_empty(prompt):
        raise RowProblem("prompt", "is empty: a prompt-only row needs a prompt to sample from")
    return PromptRecord(prompt=prompt, source=source), False


def _parse_unpaired(row: dict[str, Any], source: tuple[str, int]) -> tuple[UnpairedRecord, bool]:
    for column in ("prompt", "completion", "label"):
        if column not in row:
            raise RowProblem(column, f"missing column '{column}'")
    prompt = parse_text(row["prompt"], "prompt")
    completion = parse_text(row["completion"], "completion")
    _check_formats([("prompt", prompt), ("completion", completion)])
    _responses_after_prompt(prompt, [("completion", completion)])
    if is_empty(completion):
        raise RowProblem("completion", "is empty: a response must have content")
    label = row["label"]
    if isinstance(label, int) and not isinstance(label, bool) and label in (0, 1):
        label = bool(label)
    if not isinstance(label, bool):
        raise RowProblem("label", f"must be true (desirable) or false (undesirable), got {label!r}")
    weight, annotator = _optional(row, "weight"), _annotator(row)
    record = UnpairedRecord(
        prompt=prompt,
        completion=completion,
        label=label,
        weight=None if weight is None else parse_number(weight, "weight", low=0.0),
        annotator=annotator,
        source=source,
    )
    return record, False


PARSERS: dict[Kind, Callable[[dict[str, Any], tuple[str, int]], tuple[Any, bool]]] = {
    "pairs": _parse_pair,
    "lists": _parse_list,
    "prompts": _parse_prompt,
    "unpaired": _parse_unpaired,
}


def _detect(source: RowSource) -> tuple[Kind | None, Iterator[tuple[int, dict[str, Any] | RowError]]]:
    """The file's kind (from the schema, or the first JSONL object with a known column) and
    its rows, including any read while looking."""
    if source.columns is not None:
        try:
            kind = detect_kind(source.columns)
        except FileContentError as err:
            raise FileContentError(err.reason, file=source.file) from None
        return kind, source.rows
    seen: list[tuple[int, dict[str, Any] | RowError]] = []
    first_problem: FileContentError | None = None
    for line, row in source.rows:
        seen.append((line, row))
        if isinstance(row, dict):
            try:
                return detect_kind(row), itertools.chain(seen, source.rows)
            except FileContentError as err:
                if first_problem is None:
                    first_problem = FileContentError(err.reason, file=source.file, line=line)
    if first_problem is not None:
        raise first_problem
    if not seen:
        blank = f" ({len(source.blank_lines)} blank lines)" if source.blank_lines else ""
        raise FileContentError(f"file is empty: no rows{blank}", file=source.file)
    return None, iter(seen)


def _check_columns(source: RowSource, kind: Kind) -> None:
    """A columnar source lacking a required column fails once, not once per row."""
    if source.columns is None:
        return
    required = {"pairs": ("chosen", "rejected"), "lists": ("responses", "scores"), "prompts": ("prompt",),
                "unpaired": ("prompt", "completion", "label")}
    for column in required[kind]:
        if column not in source.columns:
            raise FileContentError(
                f"missing column '{column}' (columns: {', '.join(source.columns)})",
                file=source.file,
                field=column,
            )


@dataclass(frozen=True)
class _Kept:
    """A valid row and what was measured on it; counted only once the file is read."""

    record: Any
    implicit: bool
    measured: tuple[int, list[int], bool] | None


class _Scan:
    """One pass over a source: parse and check every row, collecting every problem; then the
    file-wide rules and the counts over the rows that stay."""

    def __init__(self, source: RowSource, kind: Kind | None, options: _Options) -> None:
        self.source, self.kind, self.options = source, kind, options
        self.report = ReadReport(file=source.file, kind=kind, max_length=options.max_length)
        if options.counter is not None:
            self.report.tokenizer = options.counter.name
        self.kept: list[_Kept] = []
        self.first_line_of: dict[tuple[Hashable, ...], int] = {}
        self.ignored: set[str] = set()

    def run(self, rows: Iterator[tuple[int, dict[str, Any] | RowError]]) -> tuple[list[Any], ReadReport]:
        if self.source.columns is not None and self.kind is not None:
            self.ignored.update(c for c in self.source.columns if c not in KNOWN_COLUMNS[self.kind])
        for line, row in rows:
            self.report.rows += 1
            if isinstance(row, RowError):
                self.report.errors.append(row)
                continue
            try:
                self.check_size(row)
                self.take(line, row)
            except RowProblem as problem:
                self.report.errors.append(RowError(self.source.file, line, problem.field, problem.reason))
        self.apply_empty_prompt_rule()
        self.count()
        return [k.record for k in self.kept], self.report

    def check_size(self, row: dict[str, Any]) -> None:
        """Columnar rows over ``max_row_bytes`` are invalid (JSONL lines are measured as read)."""
        limit = self.options.max_row_bytes
        if limit is not None and self.source.columns is not None and (size := row_bytes(row)) > limit:
            raise RowProblem(None, row_too_long(size, limit))

    def take(self, line: int, row: dict[str, Any]) -> None:
        """Parse and check one row."""
        assert self.kind is not None
        if self.source.columns is None:
            self.ignored.update(k for k in row if k not in KNOWN_COLUMNS[self.kind])
        record, implicit = PARSERS[self.kind](row, (self.source.file, line))
        key = _row_key(record)
        if key in self.first_line_of:
            self.report.duplicates += 1
            if self.options.dedupe:
                return
            raise RowProblem(
                None,
                f"exact duplicate of line {self.first_line_of[key]} "
                "(data.dedupe=true, validate --dedupe or read_*(dedupe=True) drops repeats and counts them)",
            )
        measured = self.measure(record)
        if _is_tie(record) and not self.options.allow_ties:
            if isinstance(record, PairRecord):
                raise RowProblem("label", "is 0.5 (a tie) and ties are not allowed (allow_ties=False)")
            raise RowProblem("scores", "has equal scores (a tie) and ties are not allowed (allow_ties=False)")
        self.first_line_of[key] = line
        self.kept.append(_Kept(record, implicit, measured))

    def responses(self, record: Any) -> list[tuple[str, Text]]:
        """(field, text) of each response; a prompt-only record answers with its prompt."""
        if self.kind == "pairs":
            return [("chosen", record.chosen), ("rejected", record.rejected)]
        if self.kind == "lists":
            return [(f"responses[{i}]", r) for i, r in enumerate(record.responses)]
        if self.kind == "unpaired":
            return [("completion", record.completion)]
        return [("prompt", record.prompt)]

    def measure(self, record: Any) -> tuple[int, list[int], bool] | None:
        """(prompt tokens, sequence lengths, over max_length) or None without a counter;
        over-length rows are invalid under truncation="error"."""
        counter, max_length = self.options.counter, self.options.max_length
        if counter is None:
            return None
        prompt_tokens = counter.count(render_plain(record.prompt))
        specials = counter.special_tokens
        if self.kind == "prompts":
            prompt_share, responses = prompt_tokens + specials, []
        else:  # as the trainer counts: bos with the prompt, eos with each response
            prompt_share = prompt_tokens + max(0, specials - 1)
            responses = [(name, counter.count(render_plain(text)) + min(1, specials))
                         for name, text in self.responses(record)]
        lengths = [prompt_share + n for _, n in responses] or [prompt_share]
        problem = over_length(prompt_share, responses, max_length) if max_length is not None else None
        if problem is not None and self.options.truncation == "error":
            raise RowProblem(problem.field, problem.reason)
        return prompt_tokens, lengths, problem is not None

    def apply_empty_prompt_rule(self) -> None:
        """An empty prompt is allowed only when every row's prompt is empty (an unconditional
        file); mixed with prompted rows it is almost surely a broken row, so it is an error."""
        empty = [k for k in self.kept if is_empty(k.record.prompt)]
        prompted = len(self.kept) - len(empty)
        if not empty or not prompted:
            return
        for kept in empty:
            self.report.errors.append(
                RowError(
                    self.source.file,
                    kept.record.source[1],
                    "prompt",
                    f"is empty while {prompted} other rows have a prompt (an empty prompt is "
                    "allowed only when every row's prompt is empty)",
                )
            )
        self.kept = [k for k in self.kept if not is_empty(k.record.prompt)]

    def count(self) -> None:
        """Counts and warnings over the rows that stay, in line order."""
        report = self.report
        report.errors.sort(key=lambda e: (e.line is None, e.line or 0))
        if self.options.skip_invalid:
            report.skipped, report.errors = report.errors, []
        report.kept = len(self.kept)
        report.blank_lines = len(self.source.blank_lines)
        report.ignored_columns = sorted(self.ignored)
        if report.ignored_columns:
            report.warnings.append(f"ignored columns: {', '.join(report.ignored_columns)}")
        first_line_of_format: dict[bool, int] = {}
        winner_of: dict[bytes, tuple[bytes, int]] = {}
        prompt_lengths: list[int] = []
        sequence_lengths: list[int] = []
        for kept in self.kept:
            record, line = kept.record, kept.record.source[1]
            report.implicit_prompts += kept.implicit
            report.empty_prompts += is_empty(record.prompt)
            report.ties += _is_tie(record)
            first_line_of_format.setdefault(is_conversation(self.responses(record)[0][1]), line)
            if kept.measured is not None:
                prompt_tokens, lengths, too_long = kept.measured
                prompt_lengths.append(prompt_tokens)
                sequence_lengths.extend(lengths)
                if too_long:
                    report.truncated.append(line)
            contradiction = self.contradiction(record, winner_of)
            if contradiction:
                report.contradictions += 1
                report.warnings.append(contradiction)
        if len(first_line_of_format) == 2:
            report.warnings.append(
                f"mixes string rows (first at line {first_line_of_format[False]}) and "
                f"conversational rows (first at line {first_line_of_format[True]})"
            )
        report.prompt_tokens = LengthStats.of(prompt_lengths)
        report.sequence_tokens = LengthStats.of(sequence_lengths)

    def contradiction(self, record: Any, winner_of: dict[bytes, tuple[bytes, int]]) -> str | None:
        """A pair preferring the other response than an earlier row on the same prompt and the
        same two responses, or a list scoring one response twice differently (annotators
        disagree: a counted warning, not an error)."""
        file, line = record.source
        if isinstance(record, PairRecord) and record.label != 0.5:
            chosen, rejected = canonical(record.chosen), canonical(record.rejected)
            key = _fingerprint("\x00".join([canonical(record.prompt), *sorted([chosen, rejected])]))
            winner = _fingerprint(chosen if record.label > 0.5 else rejected)
            if key not in winner_of:
                winner_of[key] = (winner, line)
            elif winner_of[key][0] != winner:
                return (
                    f"{file}:{line}: prefers the other response than line {winner_of[key][1]} "
                    "(same prompt and pair; annotators disagree)"
                )
        elif isinstance(record, UnpairedRecord):
            key = _fingerprint("\x00".join([canonical(record.prompt), canonical(record.completion)]))
            verdict = _fingerprint("desirable" if record.label else "undesirable")
            if key not in winner_of:
                winner_of[key] = (verdict, line)
            elif winner_of[key][0] != verdict:
                return (
                    f"{file}:{line}: labels the completion the other way than line {winner_of[key][1]} "
                    "(same prompt and completion; annotators disagree)"
                )
        elif isinstance(record, ListRecord):
            score_of: dict[str, float] = {}
            for i, (response, score) in enumerate(zip(record.responses, record.scores)):
                text = canonical(response)
                if score_of.get(text, score) != score:
                    return (
                        f"{file}:{line} [responses[{i}]]: same response as an earlier one in the "
                        "list with a different score"
                    )
                score_of[text] = score
        return None


def _is_tie(record: Any) -> bool:
    """A pair labelled 0.5, or a list with two equal scores."""
    if isinstance(record, PairRecord):
        return record.label == 0.5
    if isinstance(record, ListRecord):
        return len(set(record.scores)) < len(record.scores)
    return False


def _scan(data: Any, expected: Kind | None, options: _Options) -> tuple[list[Any], ReadReport]:
    source = open_source(data, max_row_bytes=options.max_row_bytes)
    kind, rows = _detect(source)
    if expected is not None and expected != "prompts" and kind is not None and kind != expected:
        columns = ", ".join(source.columns) if source.columns else "see the first row"
        raise FileContentError(
            f"expected {DESCRIBE[expected]} but the file holds {DESCRIBE[kind]} (columns: {columns})"
            + HINTS.get((expected, kind), ""),
            file=source.file,
        )
    if kind is not None:
        _check_columns(source, kind)
    records, report = _Scan(source, kind, options).run(rows)
    if report.rows == 0:  # a Parquet file or Dataset with a schema but no rows
        raise FileContentError("file is empty: no rows", file=source.file)
    return records, report


def _finish_read(records: list[Any], report: ReadReport) -> tuple[list[Any], ReadReport]:
    if report.errors:
        raise InvalidRowsError(report)
    if not records:
        first = f"; first: {report.skipped[0]}" if report.skipped else ""
        raise FileContentError(
            f"no valid rows: all {report.rows} rows were skipped as invalid{first}", file=report.file
        )
    return records, report


def _options(
    skip_invalid: bool,
    allow_ties: bool,
    dedupe: bool,
    max_length: int | None,
    truncation: Truncation,
    count_tokens: TokenCounter | Callable[[str], int] | None,
    max_row_bytes: int | None = MAX_ROW_BYTES,
) -> _Options:
    if truncation not in ("truncate", "error"):
        raise ValueError(f"truncation must be 'truncate' or 'error', got {truncation!r}")
    if max_length is not None and max_length <= 0:
        raise ValueError(f"max_length must be positive, got {max_length}")
    if max_row_bytes is not None and max_row_bytes <= 0:
        raise ValueError(f"max_row_bytes must be positive or None (no limit), got {max_row_bytes}")
    counter = as_counter(count_tokens) if max_length is not None or count_tokens is not None else None
    return _Options(skip_invalid, allow_ties, dedupe, max_length, truncation, counter, max_row_bytes)


def read_pairs(
    data: Any,
    *,
    skip_invalid: bool = False,
    allow_ties: bool = True,
    dedupe: bool = False,
    max_length: int | None = None,
    truncation: Truncation = "truncate",
    count_tokens: TokenCounter | Callable[[str], int] | None = None,
    max_row_bytes: int | None = MAX_ROW_BYTES,
) -> tuple[list[PairRecord], ReadReport]:
    """Pairwise feedback from a JSONL/Parquet file, a ``save_to_disk`` folder or a Dataset.

    Args:
        data: a path or a ``datasets.Dataset``.
        skip_invalid: drop invalid rows (listed in ``report.skipped``) instead of raising.
        allow_ties: accept label 0.5; when False a tie is an invalid row.
        dedupe: drop exact repeats of an earlier row (counted); when False they are invalid.
        max_length: tokens per sequence (prompt + response); rows above it are counted in
            ``report.truncated`` (``truncation="truncate"``) or invalid (``"error"``).
        count_tokens: a :class:`~prefkit.data.tokens.TokenCounter` (default: the built-in
            tiny tokenizer's whitespace count).
        max_row_bytes: a row (JSONL line, or the text of a Parquet/datasets row) longer than
            this is invalid, read in bounded pieces and never parsed (default
            :data:`MAX_ROW_BYTES`, 16 MiB; ``None``: no limit).

    Raises:
        InputError: the file cannot be used; :class:`InvalidRowsError` (an ``InputError``)
        when rows are invalid and ``skip_invalid`` is False.
    """
    options = _options(skip_invalid, allow_ties, dedupe, max_length, truncation, count_tokens, max_row_bytes)
    return _finish_read(*_scan(data, "pairs", options))


def read_lists(
    data: Any,
    *,
    skip_invalid: bool = False,
    allow_ties: bool = True,
    dedupe: bool = False,
    max_length: int | None = None,
    truncation: Truncation = "truncate",
    count_tokens: TokenCounter | Callable[[str], int] | None = None,
    max_row_bytes: int | None = MAX_ROW_BYTES,
) -> tuple[list[ListRecord], ReadReport]:
    """Ranked lists (``prompt``, ``responses``, ``scores``); arguments as :func:`read_pairs`.
    A tie is two equal scores in one list."""
    options = _options(skip_invalid, allow_ties, dedupe, max_length, truncation, count_tokens, max_row_bytes)
    return _finish_read(*_scan(data, "lists", options))


def read_prompts(
    data: Any,
    *,
    skip_invalid: bool = False,
    dedupe: bool = False,
    max_length: int | None = None,
    truncation: Truncation = "truncate",
    count_tokens: TokenCounter | Callable[[str], int] | None = None,
    max_row_bytes: int | None = MAX_ROW_BYTES,
) -> tuple[list[PromptRecord], ReadReport]:
    """Prompts for online training, from a prompt-only file or from the prompts of a pair or
    list file (distinct prompts, first occurrence first; repeats are expected there and only
    counted in a warning). An empty prompt is always invalid here."""
    options = _options(skip_invalid, True, dedupe, max_length, truncation, count_tokens, max_row_bytes)
    records, report = _scan(data, "prompts", options)
    if report.kind in ("pairs", "lists", "unpaired"):
        records, report = _prompts_of(records, report, options)
    return _finish_read(records, report)


def _prompts_of(records: list[Any], report: ReadReport, options: _Options) -> tuple[list[PromptRecord], ReadReport]:
    prompts: list[PromptRecord] = []
    seen: set[Hashable] = set()
    repeats = 0
    for record in records:
        if is_empty(record.prompt):
            error = RowError(report.file, record.source[1], "prompt", "is empty: online training needs a prompt to sample from")
            (report.skipped if options.skip_invalid else report.errors).append(error)
            continue
        key = _text_key(record.prompt)
        if key in seen:
            repeats += 1
            continue
        seen.add(key)
        prompts.append(PromptRecord(prompt=record.prompt, source=record.source))
    report.errors.sort(key=lambda e: e.line or 0)
    if repeats:
        report.warnings.append(f"{repeats} rows repeat an earlier prompt; {len(prompts)} distinct prompts kept")
    report.kept = len(prompts)
    return prompts, report


def read_unpaired(
    data: Any,
    *,
    skip_invalid: bool = False,
    dedupe: bool = False,
    max_length: int | None = None,
    truncation: Truncation = "truncate",
    count_tokens: TokenCounter | Callable[[str], int] | None = None,
    split_pairs: bool = False,
    max_row_bytes: int | None = MAX_ROW_BYTES,
) -> tuple[list[UnpairedRecord], ReadReport]:
    """Unpaired feedback (TRL's ``prompt``/``completion``/``label``); arguments as
    :func:`read_pairs`. With ``split_pairs=True`` a pairs file is accepted too and each pair
    becomes a desirable and an undesirable row (:func:`prefkit.data.unpair`, as TRL's
    ``KTOTrainer`` does); without it a pairs file is an error that says so."""
    options = _options(skip_invalid, True, dedupe, max_length, truncation, count_tokens, max_row_bytes)
    if split_pairs:
        source = open_source(data, max_row_bytes=max_row_bytes)
        kind, _ = _detect(source)
        if kind == "pairs":
            from prefkit.data.unpaired import unpair

            pairs, report = read_pairs(data, skip_invalid=skip_invalid, dedupe=dedupe, max_length=max_length,
                                       truncation=truncation, count_tokens=count_tokens, max_row_bytes=max_row_bytes)
            return unpair(pairs), report
    return _finish_read(*_scan(data, "unpaired", options))


def read_feedback(
    data: Any,
    *,
    skip_invalid: bool = False,
    allow_ties: bool = True,
    dedupe: bool = False,
    max_length: int | None = None,
    truncation: Truncation = "truncate",
    count_tokens: TokenCounter | Callable[[str], int] | None = None,
    max_row_bytes: int | None = MAX_ROW_BYTES,
) -> tuple[list[Record], ReadReport]:
    """Any feedback file: the kind (``report.kind``: pairs, lists or prompts) is detected from
    the columns (JSONL: the first object with a known column)."""
    options = _options(skip_invalid, allow_ties, dedupe, max_length, truncation, count_tokens, max_row_bytes)
    return _finish_read(*_scan(data, None, options))


def validate(
    data: Any,
    *,
    max_length: int | None = None,
    count_tokens: TokenCounter | Callable[[str], int] | None = None,
    truncation: Truncation = "truncate",
    skip_invalid: bool = False,
    allow_ties: bool = True,
    dedupe: bool = False,
    max_row_bytes: int | None = MAX_ROW_BYTES,
) -> ReadReport:
    """Check a feedback file and return the full report without raising for bad content.

    Token lengths are always measured (default: the built-in tiny tokenizer's whitespace
    count). ``report.valid`` is False when any row is invalid, the file as a whole is unusable
    (empty, unknown columns: one error with no line) or no row is kept.

    Raises:
        InputError: only for a path that cannot be opened (missing, unsupported type).
    """
    options = _options(skip_invalid, allow_ties, dedupe, max_length, truncation, as_counter(count_tokens),
                       max_row_bytes)
    try:
        return _scan(data, None, options)[1]
    except FileContentError as err:
        report = ReadReport(file=err.file or str(data), max_length=max_length)
        report.errors.append(RowError(report.file, err.line, err.field, err.reason))
        return report
