"""``prefkit rubrics``: write label-consistent rubrics from preference pairs (OpenRubrics).

``prefkit rubrics --data PAIRS --llm SPEC --out RUBRICS.json [--judge SPEC] [--tries 3]
[--temperature 1.0] [--sample N] [--json]`` writes a rubric file (``prefkit.preference.rubrics``)
that ``prefkit rm eval --model rubric:RUBRICS.json`` and ``online.judge=rubric:RUBRICS.json`` use.
"""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "rubrics", help="contrastive rubric generation from pairs, kept only when label-consistent (OpenRubrics)",
        description="For each pair, ask the LLM for a rubric (hard rules + principles) that separates the chosen "
                    "from the rejected response; keep it only when a judge grading with it prefers the chosen "
                    "response (up to --tries rubrics per pair). Writes a rubric file for the rubric judge "
                    "(rm eval --model rubric:FILE, online.judge=rubric:FILE; docs/principles.md).")
    p.add_argument("--data", required=True, metavar="FILE", help="pairs (TRL prompt/chosen/rejected)")
    p.add_argument("--llm", required=True, metavar="SPEC", help="rubric writer: hf:DIR, openai:MODEL (docs/llm.md)")
    p.add_argument("--judge", default=None, metavar="SPEC", help="judge of the consistency check and of the rubric "
                                                                  "file (default: --llm)")
    p.add_argument("--out", required=True, metavar="FILE", help="rubric file to write (.json)")
    p.add_argument("--tries", type=int, default=3, help="rubrics drawn per pair until one is consistent (default 3)")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--sample", type=int, default=None, metavar="N", help="use N pairs drawn at random")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from prefkit._atomic import atomic_write_text
    from prefkit.data import read_pairs
    from prefkit.llm import LLMConfig, make_backend
    from prefkit.preference.llm_judge import LLMJudge
    from prefkit.preference.rubrics import generate_rubrics

    records, _ = read_pairs(args.data)
    if args.sample is not None:
        if args.sample < 1:
            raise ValueError("--sample must be at least 1")
        pick = np.random.default_rng(args.seed).permutation(len(records))[: args.sample]
        records = [records[i] for i in sorted(pick)]
    config = LLMConfig.from_env()
    writer = make_backend(args.llm, config)
    judge_spec = args.judge or args.llm
    judge = LLMJudge(writer if judge_spec == args.llm else make_backend(judge_spec, config))
    result = generate_rubrics(records, writer, judge=judge, tries=args.tries, temperature=args.temperature,
                              seed=args.seed)
    stats = result.stats
    if not result.rubrics:
        raise ValueError(f"no rubric passed the label-consistency check on {stats['pairs']} pairs "
                         f"({stats['unparsed']} answers were not a rubric, {stats['rejected']} rubrics disagreed with "
                         "the label); nothing written (with the request cache a rerun is cheap)")
    payload = result.to_json(judge=judge_spec, labels=judge.labels)
    atomic_write_text(args.out, json.dumps(payload, indent=2) + "\n")
    summary = {"out": args.out, **stats, "general_principles": len(result.general.principles) if result.general else 0,
               "llm": writer.summary()}
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"wrote {stats['kept']} rubrics for {stats['pairs']} pairs to {args.out} ({stats['rejected']} rejected "
              f"as label-inconsistent, {stats['unparsed']} unparsable answers, {stats['without_rubric']} pairs "
              "without a rubric)")
    return 0
