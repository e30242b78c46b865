"""``prefkit demo``: the main job on the built-in world (what ``make demo`` runs)."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="align a tiny policy on a simulated world by many methods; print the leaderboard",
        description=(
            "Build a simulated world, fit a tiny reference by SFT, collect noisy preference labels, "
            "train every method, and rank them by win-rate under the world's true preference."
        ),
    )
    p.add_argument("--world", default="transitive", help="simulated world (transitive, cyclic, noisy)")
    p.add_argument("--out", default="runs/demo", help="output directory (default runs/demo)")
    p.add_argument("--fast", action="store_true", help="fewer steps and samples (under 3 minutes on 2 CPU cores)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--annotators", help="annotator pool that labels the feedback: clean, alpacafarm or "
                   "length_biased (default: the world's own)")
    p.add_argument("--methods", nargs="+", help="only these methods (names or labels)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (default 1: fastest for the tiny models, robust on a busy machine)")
    p.add_argument("--json", action="store_true", help="print the leaderboard as one JSON object")
    again = p.add_mutually_exclusive_group()
    again.add_argument("--overwrite", action="store_true", help="replace an earlier demo in --out")
    again.add_argument("--resume", action="store_true",
                       help="continue an interrupted demo in --out (same settings): finished methods are reused")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import sys

    import torch

    from prefkit.demo import run_demo
    from prefkit.sim import WORLDS
    from prefkit.sim.annotators import POOLS

    if args.world not in WORLDS:
        raise ValueError(f"--world: unknown world {args.world!r} (known: {', '.join(sorted(WORLDS))})")
    if args.annotators is not None and args.annotators not in POOLS:
        raise ValueError(f"--annotators: unknown pool {args.annotators!r} (known: {', '.join(sorted(POOLS))})")
    log = (lambda msg: print(msg, file=sys.stderr)) if args.json else print
    torch.set_num_threads(args.threads)
    rows = run_demo(args.world, out=args.out, fast=args.fast, seed=args.seed, methods=args.methods, log=log,
                    overwrite=args.overwrite, annotators=args.annotators,
                    resume=args.resume)
    if args.json:
        print(json.dumps({"world": args.world, "out": args.out, "leaderboard": rows}))
        return 0
    from rich.console import Console
    from rich.table import Table

    pool = f", annotators {args.annotators}" if args.annotators else ""
    table = Table(title=f"prefkit demo: world '{args.world}'{pool} (win-rate under the true preference P*)")
    cyclic = any("exploitability" in r for r in rows)
    for col in ("rank", "method", "win-rate ± SE", "KL", *(["exploitability"] if cyclic else []), "queries",
                "samples", "s"):
        table.add_column(col, justify="left" if col == "method" else "right")
    for i, r in enumerate(sorted(rows, key=lambda r: -r["win_rate"]), 1):
        cells = [str(i), r["method"], f"{r['win_rate']:.3f} ± {r['win_rate_se']:.3f}", f"{r['kl']:.2f}"]
        if cyclic:
            cells.append(f"{r['exploitability']:.3f}" if "exploitability" in r else "–")
        cells += [str(r["queries"]), str(r.get("samples", "–")), f"{r['seconds']:.1f}"]
        table.add_row(*cells)
    Console().print(table)
    print(f"wrote {args.out}/leaderboard.json, leaderboard.md and leaderboard.png")
    return 0
