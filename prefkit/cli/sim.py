"""``prefkit sim``: export labelled data from a built-in world, or describe a world."""

from __future__ import annotations

import argparse
import json
from typing import Any

# Kept literal so that registering the command imports nothing heavy; a test checks them
# against prefkit.sim.WORLDS and prefkit.sim.POOLS.
WORLD_NAMES = ("transitive", "cyclic", "noisy")
POOL_NAMES = ("clean", "alpacafarm", "length_biased")
RATER_POOL_NAMES = ("default", "exact")
KINDS = ("pairs", "lists", "ratings", "unpaired", "critiques")
KIND_FLAGS = {
    "responses_per_prompt": ("pairs",), "planted": ("pairs",), "subject_rate": ("pairs",),
    "levels": ("ratings",), "completions": ("ratings",), "raters": ("ratings", "unpaired"),
    "recall": ("critiques",), "lists": ("lists",),
}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sim", help="built-in simulated worlds: export data, describe",
                       description="Simulated worlds with a known true preference (docs/worlds.md).")
    sim_sub = p.add_subparsers(dest="sim_command", metavar="SUBCOMMAND", required=True)

    e = sim_sub.add_parser(
        "export",
        help="write feedback (pairs, lists, ratings, thumbs, critiques) as JSON lines",
        description=(
            "Sample prompts from the world's split, base responses, and feedback on them; write one "
            "JSON object per line, atomically. --kind pairs: prompt/chosen/rejected/annotator (labels "
            "from the annotator pool, or from a pool with planted principles with --planted); lists: "
            "prompt/responses/scores; ratings: prompt/completions/ratings/annotator on 1..LEVELS "
            "(--completions 1: prompt/completion/rating); unpaired: prompt/completion/label "
            "(thumbs up/down, TRL's unpaired format); critiques: prompt/completion/critique/issues/annotator "
            "(docs/worlds.md, docs/feedback.md)."
        ),
    )
    _world_args(e)
    e.add_argument("--kind", choices=KINDS, default=None, help="what to write (default pairs; --lists K implies lists)")
    e.add_argument("--n", type=int, required=True, help="number of rows")
    e.add_argument("--out", required=True, metavar="FILE", help="output .jsonl path")
    e.add_argument("--lists", type=int, default=None, metavar="K",
                   help="write ranked lists of K responses instead of pairs (--kind lists)")
    e.add_argument("--responses-per-prompt", type=int, default=None, metavar="K",
                   help="pairs only: label all pairs of K responses and keep best vs worst (default 2)")
    e.add_argument("--planted", default=None, metavar="NAME:SHARE,...",
                   help="pairs only: labels from a pool with planted principles, e.g. longer:0.4,subject:0.3 "
                        "('default' is exactly that); the rest of the votes follow P*")
    e.add_argument("--subject-rate", type=float, default=None,
                   help="with --planted: probability that a response names the prompt's subject (default 0.5)")
    e.add_argument("--levels", type=int, default=None,
                   help="ratings only: the scale 1..LEVELS (default 5; 10 for UltraFeedback-style scores)")
    e.add_argument("--completions", type=int, default=None, metavar="K",
                   help="ratings only: completions rated per prompt (default 4; 1 writes prompt/completion/rating)")
    e.add_argument("--raters", default=None, choices=RATER_POOL_NAMES,
                   help="ratings and unpaired: the rater pool (default 'default')")
    e.add_argument("--recall", type=float, default=None,
                   help="critiques only: probability that each issue is mentioned (default 1)")
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

    kind = args.kind or ("lists" if args.lists is not None else "pairs")
    for flag, kinds in KIND_FLAGS.items():
        if getattr(args, flag) is not None and kind not in kinds:
            raise ConfigError(f"--{flag.replace('_', '-')} applies to --kind {' or '.join(kinds)}, not {kind}")
    if args.n <= 0:
        raise ConfigError(f"--n must be positive, got {args.n}")
    if kind == "lists" and (args.lists is None or args.lists < 2):
        raise ConfigError(f"--lists must be at least 2, got {args.lists}" if args.lists is not None
                          else "--kind lists needs --lists K (responses per list)")
    if args.planted is not None and args.responses_per_prompt is not None:
        raise ConfigError("--planted labels pairs of two responses; drop --responses-per-prompt")
    uses_pool = kind == "lists" or (kind == "pairs" and args.planted is None)
    if args.annotators is not None and not uses_pool:
        raise ConfigError(f"--annotators picks the pairwise annotator pool of --kind pairs and lists; --kind {kind}"
                          f"{' with --planted' if kind == 'pairs' else ''} has its own annotators"
                          f"{' (--raters)' if kind in ('ratings', 'unpaired') else ''}")
    if args.subject_rate is not None and args.planted is None:
        raise ConfigError("--subject-rate needs --planted")
    per_prompt = 2 if args.responses_per_prompt is None else args.responses_per_prompt
    if per_prompt < 2:
        raise ConfigError(f"--responses-per-prompt must be at least 2, got {per_prompt}")
    rng = np.random.default_rng(args.seed)
    extra: dict[str, Any] = {}
    try:
        rows, extra = _rows(world, kind, args, rng, per_prompt)
    except ValueError as err:
        raise ConfigError(str(err)) from err
    write_jsonl_atomic(rows, args.out)
    summary = {
        "out": args.out,
        "rows": len(rows),
        "kind": kind,
        "world": world.name,
        "seed": world.seed,
        "split": args.split,
        "annotators": world.config.annotators if isinstance(world.config.annotators, str) else "custom",
        **extra,
    }
    if not uses_pool:
        summary["annotators"] = extra.get("raters") or ("planted" if kind == "pairs" else "critic")
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"wrote {len(rows)} {kind} from world {world.name!r} "
              f"(seed {world.seed}, {summary['annotators']} annotators) to {args.out}")
    return 0


def _rows(world: Any, kind: str, args: argparse.Namespace, rng: Any, per_prompt: int
          ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The rows of one export and the summary fields it adds."""
    if kind == "lists":
        return [r.to_json() for r in world.lists(args.n, args.lists, rng, split=args.split)], {}
    if kind == "pairs" and args.planted is None:
        records = world.pairs(args.n, rng, split=args.split, responses_per_prompt=per_prompt)
        return [r.to_json() for r in records], {}
    if kind == "pairs":
        from prefkit.sim.principles import planted_pairs, resolve_planted

        planted = resolve_planted(args.planted)
        rate = 0.5 if args.subject_rate is None else args.subject_rate
        records = planted_pairs(world, args.n, rng, principles=[(p.name, p.share) for p in planted],
                                subject_rate=rate, split=args.split)
        return [r.to_json() for r in records], {
            "planted": {p.name: p.share for p in planted}, "subject_rate": rate}
    if kind == "ratings":
        from prefkit.sim.ratings import rated_lists, single_ratings

        levels = 5 if args.levels is None else args.levels
        k = 4 if args.completions is None else args.completions
        if k < 1:
            raise ValueError(f"--completions must be at least 1, got {k}")
        pool = args.raters or "default"
        if k == 1:
            records = single_ratings(world, args.n, rng, levels=levels, split=args.split, pool=pool)
        else:
            records = rated_lists(world, args.n, k, rng, levels=levels, split=args.split, pool=pool)
        return [r.to_json() for r in records], {"scale": [1, levels], "raters": pool, "completions": k}
    if kind == "unpaired":
        from prefkit.sim.ratings import unpaired

        pool = args.raters or "default"
        return unpaired(world, args.n, rng, split=args.split, pool=pool), {"raters": pool}
    from prefkit.sim.critiques import critique_rows

    recall = 1.0 if args.recall is None else args.recall
    return critique_rows(world, args.n, rng, split=args.split, recall=recall), {"recall": recall}


def write_jsonl_atomic(rows: list[dict[str, Any]], path: str) -> None:
    """Write JSON lines through a temporary file beside ``path`` renamed into place."""
    from prefkit._atomic import atomic_write_text

    atomic_write_text(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


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
