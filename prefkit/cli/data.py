"""``prefkit data``: reshape feedback files.

- ``data binarize --data RATINGS --out PAIRS [--rule best_worst|best_random|all_pairs] [--margin M]
  [--margin-scale S] [--scale LOW-HIGH] [--lists] [--seed S] [--json]``: rated completions ->
  preference pairs (or ranked lists), ``prefkit.data.binarize``.
"""

from __future__ import annotations

import argparse
import json

RULES = ("best_worst", "best_random", "all_pairs")  # literal so registering imports nothing heavy


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="reshape feedback files: binarize ratings into pairs or lists",
                       description="Reshape feedback files (docs/feedback.md).")
    data_sub = p.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)
    b = data_sub.add_parser(
        "binarize", help="rated completions -> preference pairs (or ranked lists)",
        description="Read ratings (prompt/completions/ratings, or prompt/completion/rating rows grouped by prompt "
                    "and annotator) and write pairs in TRL's prompt/chosen/rejected format: best_worst (RLHF "
                    "Workflow's max_min), best_random (UltraFeedback-binarized: the best against a random "
                    "lower-rated one), or all_pairs with a rating gap of at least --margin. Lists whose ratings "
                    "are all equal give no pair and are counted. --lists writes prompt/responses/scores instead.")
    b.add_argument("--data", required=True, metavar="FILE", help="ratings file (JSONL, Parquet, save_to_disk dir)")
    b.add_argument("--out", required=True, metavar="FILE", help="output .jsonl")
    b.add_argument("--rule", choices=RULES, default=None, help="binarisation rule (default best_worst)")
    b.add_argument("--margin", type=float, default=None,
                   help="minimum rating gap of a pair (default 0; all_pairs needs > 0)")
    b.add_argument("--margin-scale", type=float, default=None,
                   help="write margin = gap * SCALE on each pair (RLHF Workflow's DPO margin)")
    b.add_argument("--scale", default=None, metavar="LOW-HIGH", help="declared rating scale, checked on read")
    b.add_argument("--lists", action="store_true", help="write ranked lists (prompt/responses/scores), not pairs")
    b.add_argument("--seed", type=int, default=0, help="seed of the random tie-breaks and best_random draws")
    b.add_argument("--json", action="store_true", help="print one JSON object")
    b.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from prefkit.cli.sim import write_jsonl_atomic
    from prefkit.data.binarize import binarize, group_ratings
    from prefkit.data.ratings import RatingRecord, parse_scale, read_ratings

    if args.lists and (args.rule or args.margin is not None or args.margin_scale is not None):
        raise ValueError("--lists writes every rated completion; --rule, --margin and --margin-scale apply to pairs")
    scale = parse_scale(args.scale) if args.scale else None
    records, report = read_ratings(args.data, scale=scale)
    if records and isinstance(records[0], RatingRecord):
        records = group_ratings(records)  # type: ignore[arg-type]
    if args.lists:
        kept = [r for r in records if len(r.completions) >= 2]
        rows = [r.to_list().to_json() for r in kept]
        summary = {"out": args.out, "kind": "lists", "lists": len(rows), "too_few": len(records) - len(kept)}
    else:
        pairs, info = binarize(records, rule=args.rule or "best_worst",
                               margin=0.0 if args.margin is None else args.margin,
                               margin_scale=args.margin_scale, rng=np.random.default_rng(args.seed))
        rows = [p.to_json() for p in pairs]
        summary = {"out": args.out, "kind": "pairs", **info.to_json()}
    if not rows:
        raise ValueError(f"{args.data}: no {summary['kind']} to write (every list was tied or had fewer than two "
                         "completions); nothing written")
    write_jsonl_atomic(rows, args.out)
    summary["warnings"] = report.warnings
    if args.json:
        print(json.dumps(summary))
    else:
        what = f"{len(rows)} {summary['kind']}"
        print(f"wrote {what} from {report.kept} rated rows of {args.data} to {args.out}")
        if not args.lists:
            print(f"  no pair: {summary['all_tied']} all-tied, {summary['too_few']} with one completion; "
                  f"{summary['below_margin']} candidate pairs below the margin")
    return 0
