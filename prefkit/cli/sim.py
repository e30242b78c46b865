"""``prefkit sim``: export labelled data from a built-in world, or describe a world."""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from typing import Any

# Kept literal so that registering the command imports nothing heavy; a test checks them
# against prefkit.sim.WORLDS and prefkit.sim.POOLS.
WORLD_NAMES = ("transitive", "cyclic", "noisy")
POOL_NAMES = ("clean", "alpacafarm", "length_biased")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sim", help="built-in simulated worlds: export data, describe",
                       description="Simulated worlds with a known true preference (docs/worlds.md).")
    sim_sub = p.add_subparsers(dest="sim_command", metavar="SUBCOMMAND", required=True)

    e = sim_sub.add_parser(
        "export",
        help="write labelled pairs (or ranked lists) in TRL's JSONL format",
        description=(
            "Sample prompts from the world's split, base responses, and labels from its "
            "annotator pool; write one JSON object per line: prompt/chosen/rejected/annotator "
            "(pairs) or prompt/responses/scores (with --lists K). The file is written atomically."
        ),
    )
    _world_args(e)
    e.add_argument("--n", type=int, required=True, help="number of rows (pairs or lists)")
    e.add_argument("--out", required=True, metavar="FILE", help="output .jsonl path")
    e.add_argument("--lists", type=int, default=None, metavar="K",
                   help="write ranked lists of K responses instead of pairs")
    e.add_argument("--responses-per-prompt", type=int, default=2, metavar="K",
                   help="pairs only: label all pairs of K responses and keep best vs worst (default 2)")
    e.add_argument("--split", choices=("train", "eval"), default="train", help="prompt split (default train)")
    e.add_argument("--json", action="store_true", help="print one JSON object")
    e.set_defaults(func=run)

    d = sim_sub.add_parser("describe", help="what a world's prompts, responses and true preference are",
                           description="Print a world's description, example prompts and responses "
                                       "with their utilities, and its headroom.")
    _world_args(d)
    d.add_argument("--examples", type=int, default=3, metavar="N", help="example prompts to show (default 3)")
    d.add_argument("--json", action="store_true", help="print one JSON object")
    d.set_defaults(func=run)


def _world_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--world", required=True, help=f"world name: {', '.join(WORLD_NAMES)}")
    p.add_argument("--seed", type=int, default=0, help="world and sampling seed (default 0)")
    p.add_argument("--annotators", default=None,
                   help=f"annotator pool: {', '.join(POOL_NAMES)} (default: the world's own)")


def run(args: argparse.Namespace) -> int:
    from prefkit.config import ConfigError
    from prefkit.sim import make_world

    overrides = {} if args.annotators is None else {"annotators": args.annotators}
    try:
        world = make_world(args.world, seed=args.seed, **overrides)
    except ValueError as err:
        raise ConfigError(str(err)) from err
    if args.sim_command == "export":
        return _export(world, args)
    return _describe(world, args)


def _export(world: Any, args: argparse.Namespace) -> int:
    import numpy as np

    from prefkit.config import ConfigError

    if args.n <= 0:
        raise ConfigError(f"--n must be positive, got {args.n}")
    if args.lists is not None and args.lists < 2:
        raise ConfigError(f"--lists must be at least 2, got {args.lists}")
    if args.responses_per_prompt < 2:
        raise ConfigError(f"--responses-per-prompt must be at least 2, got {args.responses_per_prompt}")
    rng = np.random.default_rng(args.seed)
    if args.lists is not None:
        records = world.lists(args.n, args.lists, rng, split=args.split)
    else:
        records = world.pairs(args.n, rng, split=args.split, responses_per_prompt=args.responses_per_prompt)
    write_jsonl_atomic([r.to_json() for r in records], args.out)
    summary = {
        "out": args.out,
        "rows": len(records),
        "kind": "lists" if args.lists is not None else "pairs",
        "world": world.name,
        "seed": world.seed,
        "split": args.split,
        "annotators": world.config.annotators if isinstance(world.config.annotators, str) else "custom",
    }
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"wrote {len(records)} {summary['kind']} from world {world.name!r} "
              f"(seed {world.seed}, {summary['annotators']} annotators) to {args.out}")
    return 0


def write_jsonl_atomic(rows: list[dict[str, Any]], path: str) -> None:
    """Write JSON lines to a temporary file beside ``path``, then rename it into place."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".jsonl", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _describe(world: Any, args: argparse.Namespace) -> int:
    import numpy as np

    from prefkit.sim import lexicon
    from prefkit.sim.evaluation import best_of_n, evaluate

    rng = np.random.default_rng(args.seed)
    examples = []
    for prompt in world.prompts("eval", max(args.examples, 0)):
        responses = world.base_responses([prompt], 3, rng)[0]
        ideal = world.ideal_response(prompt)
        texts = [*responses, ideal]
        utilities = world.utility([prompt] * len(texts), texts)
        examples.append({
            "prompt": prompt,
            "base": [{"text": t, "utility": round(float(u), 2)} for t, u in zip(responses, utilities)],
            "ideal": {"text": ideal, "utility": round(float(utilities[-1]), 2)},
            "style_nash": dict(zip([*lexicon.STYLES, "none"],
                                   [round(float(p), 3) for p in world.style_nash(prompt)])),
        })
    prompts = world.prompts("eval")
    headroom = evaluate(world, prompts, best_of_n(world, prompts, 4, 16, rng),
                        world.base_responses(prompts, 4, rng))
    info = {
        "world": world.name,
        "seed": world.seed,
        "description": world.describe(),
        "vocabulary_size": len(world.vocabulary()),
        "examples": examples,
        "headroom": {"best_of_16_vs_base": headroom.win_rate, "se": headroom.win_rate_se,
                     "prompts": headroom.n_prompts},
    }
    if args.json:
        print(json.dumps(info))
        return 0
    print(info["description"])
    for ex in examples:
        print(f"\nprompt: {ex['prompt']!r}   style Nash: {ex['style_nash']}")
        for r in ex["base"]:
            print(f"  base  u={r['utility']:+6.2f}  {r['text']}")
        print(f"  ideal u={ex['ideal']['utility']:+6.2f}  {ex['ideal']['text']}")
    print(f"\nheadroom: best-of-16 base responses (by utility) beat base responses with "
          f"P* = {headroom.win_rate:.3f} ± {headroom.win_rate_se:.3f} over {headroom.n_prompts} eval prompts")
    return 0
