"""``prefkit validate``: check a feedback file and list every problem (exit 1 when invalid)."""

from __future__ import annotations

import argparse
import json

from prefkit.data.readers import MAX_ROW_BYTES
from prefkit.data.report import MAX_LISTED


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def _row_limit(text: str) -> int | None:
    if text.lower() == "none":
        return None
    return _positive_int(text)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "validate",
        help="check a feedback file (pairs, ranked lists, prompts, ratings or critiques); exit 1 on errors",
        description=(
            "Read a JSONL or Parquet feedback file (or a Dataset.save_to_disk directory), list "
            "every invalid row as file:line [field]: reason, and report ties, duplicates, "
            "contradicting pairs, over-length rows and token lengths. Exit status: 0 valid, "
            "1 invalid rows or an unusable file, 2 a path that cannot be opened."
        ),
    )
    p.add_argument("--data", required=True, metavar="FILE",
                   help="JSONL, Parquet, save_to_disk directory (Dataset or DatasetDict) or hub dataset name")
    p.add_argument("--split", default=None, help="split of a DatasetDict or hub dataset (default train)")
    p.add_argument("--column", action="append", default=[], metavar="PREFKIT=FILE",
                   help="column map, e.g. --column chosen=answer_good (repeatable; as data.columns)")
    p.add_argument("--max-length", type=_positive_int, default=None, metavar="N",
                   help="tokens per sequence (prompt + response); longer rows are reported")
    p.add_argument("--truncation", choices=("truncate", "error"), default="truncate",
                   help="over-length rows: counted as truncated (default) or errors, as train.truncation")
    p.add_argument("--tokenizer", default=None, metavar="PATH",
                   help="local Hugging Face tokenizer directory (default: the built-in tiny "
                        "tokenizer's whitespace count)")
    p.add_argument("--skip-invalid", action="store_true",
                   help="report invalid rows as skipped (as data.skip_invalid=true would) instead of errors")
    p.add_argument("--dedupe", action="store_true", help="exact duplicate rows are dropped and counted, not errors")
    p.add_argument("--no-ties", action="store_true", help="ties (label 0.5, equal scores) are errors")
    p.add_argument("--scale", default=None, metavar="LOW-HIGH",
                   help="ratings files: the declared scale (e.g. 1-5, 1-10); ratings outside it are errors")
    p.add_argument("--integer", action="store_true", help="ratings files: ratings must be whole numbers")
    p.add_argument("--max-row-bytes", type=_row_limit, default=MAX_ROW_BYTES, metavar="N",
                   help=f"rows longer than N bytes are invalid, as data.max_row_bytes (default {MAX_ROW_BYTES}, "
                        "16 MiB; 'none': no limit)")
    p.add_argument("--max-errors", type=_positive_int, default=MAX_LISTED, metavar="N",
                   help=f"problems listed before summarising the rest (default {MAX_LISTED})")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from prefkit.data import DataSource, hf_counter, validate
    from prefkit.data.ratings import detect_feedback_kind

    columns = _column_map(args.column)
    graded = _graded_report(args, detect_feedback_kind(DataSource(args.data, split=args.split, columns=columns)))
    if graded is not None:
        report = graded
    elif args.scale or args.integer:
        raise ValueError("--scale and --integer apply to ratings files (prompt/completions/ratings or "
                         "prompt/completion/rating)")
    else:
        report = _pairwise_report(args, columns, hf_counter, validate)
    if args.json:
        print(json.dumps(report.to_json(max_listed=args.max_errors)))
    else:
        _print(report, args.max_errors)
    return 0 if report.valid else 1


def _graded_report(args: argparse.Namespace, kind: str | None):
    """The report of a ratings or critiques file (``prefkit.data.ratings``/``critiques``), else None."""
    if kind is None:
        return None
    if args.split or args.column:
        raise ValueError(f"--split and --column apply to pairs, lists, prompts and unpaired data, not to {kind} files")
    if args.max_length or args.tokenizer or args.no_ties or args.truncation != "truncate":
        raise ValueError(f"--max-length, --tokenizer, --truncation and --no-ties apply to pairs, lists and "
                         f"prompts files, not to {kind} files")
    if kind == "critiques":
        from prefkit.data.critiques import validate_critiques

        if args.scale or args.integer:
            raise ValueError("--scale and --integer apply to ratings files, not critiques")
        return validate_critiques(args.data, skip_invalid=args.skip_invalid, dedupe=args.dedupe)
    from prefkit.data.ratings import parse_scale, validate_ratings

    scale = parse_scale(args.scale) if args.scale else None
    return validate_ratings(args.data, scale=scale, integer=args.integer, skip_invalid=args.skip_invalid,
                            dedupe=args.dedupe)


def _column_map(items: list[str]) -> dict[str, str]:
    """``--column PREFKIT=FILE`` options as a checked column map."""
    from prefkit.data.columns import check_column_map

    columns = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"--column {item!r}: expected PREFKIT=FILE, e.g. chosen=answer_good")
        key, value = item.split("=", 1)
        columns[key.strip()] = value.strip()
    check_column_map(columns)
    return columns


def _pairwise_report(args: argparse.Namespace, columns: dict[str, str], hf_counter, validate):
    from prefkit.data import DataSource

    counter = hf_counter(args.tokenizer) if args.tokenizer else None
    return validate(
        DataSource(args.data, split=args.split, columns=columns),
        max_length=args.max_length,
        count_tokens=counter,
        truncation=args.truncation,
        skip_invalid=args.skip_invalid,
        allow_ties=not args.no_ties,
        dedupe=args.dedupe,
        max_row_bytes=args.max_row_bytes,
    )


def _print(report, cap: int) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False)
    summary = Table(title=f"prefkit validate: {report.file}", show_header=False)
    summary.add_row("kind", str(report.kind or "unknown"))
    summary.add_row("rows read / kept", f"{report.rows} / {report.kept}")
    summary.add_row("errors", str(len(report.errors)))
    summary.add_row("skipped (invalid)", str(len(report.skipped)))
    summary.add_row("ties", str(report.ties))
    summary.add_row("exact duplicates", str(report.duplicates))
    summary.add_row("contradicting pairs", str(report.contradictions))
    summary.add_row("implicit prompts split", str(report.implicit_prompts))
    summary.add_row("empty prompts", str(report.empty_prompts))
    if report.blank_lines:
        summary.add_row("blank lines", str(report.blank_lines))
    if report.max_length is not None:
        summary.add_row(f"over max_length {report.max_length}", str(len(report.truncated)))
    if report.ignored_columns:
        summary.add_row("ignored columns", ", ".join(report.ignored_columns))
    console.print(summary)

    if report.sequence_tokens is not None:
        lengths = Table(title=f"token lengths ({report.tokenizer})")
        for column in ("", "count", "min", "mean", "median", "p95", "max"):
            lengths.add_column(column, justify="right")
        for name, stats in (("prompt", report.prompt_tokens), ("prompt + response", report.sequence_tokens)):
            if stats is not None:
                lengths.add_row(name, str(stats.count), str(stats.min), f"{stats.mean:.1f}",
                                f"{stats.median:g}", f"{stats.p95:g}", str(stats.max))
        console.print(lengths)

    for title, items in (("errors", report.errors), ("skipped rows", report.skipped)):
        if items:
            console.print(f"[bold]{title}[/bold] ({len(items)}):")
            for item in items[:cap]:
                console.print(f"  {item}", markup=False, soft_wrap=True)
            if len(items) > cap:
                console.print(f"  ... and {len(items) - cap} more", markup=False)
    if report.truncated:
        lines = ", ".join(str(n) for n in report.truncated[:cap])
        more = f" and {len(report.truncated) - cap} more" if len(report.truncated) > cap else ""
        console.print(f"over max_length (truncated in training): lines {lines}{more}", markup=False, soft_wrap=True)
    if report.warnings:
        console.print(f"[bold]warnings[/bold] ({len(report.warnings)}):")
        for warning in report.warnings[:cap]:
            console.print(f"  {warning}", markup=False, soft_wrap=True)
        if len(report.warnings) > cap:
            console.print(f"  ... and {len(report.warnings) - cap} more", markup=False)
    if report.valid:
        console.print("[green]valid[/green]")
    elif report.kept == 0 and not report.errors:
        console.print("[red]invalid: no usable rows[/red]")
    else:
        console.print(f"[red]invalid: {len(report.errors)} error(s)[/red]")
