"""``prefkit eval``: a trained policy on a simulated world (win-rate, KL) or on a pairs file."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="evaluate a policy: win-rate and KL on a world, or implicit-reward accuracy on pairs",
        description=(
            "With --world: win-rate against the reference under the world's true preference and "
            "KL(policy || reference). With --data (pairs): how often the implicit reward "
            "log pi/pi_ref ranks chosen above rejected. The reference defaults to the run's own "
            "(the reference/ directory beside policy/, or the run's initial model)."
        ),
    )
    p.add_argument("--policy", required=True,
                   help="a run's --out directory, its policy/, or any Hugging Face checkpoint directory")
    p.add_argument("--ref", help="reference policy directory")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--world", help="simulated world name")
    target.add_argument("--data", help="pairs file (JSONL/Parquet)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="eval.* settings, e.g. eval.prompts=120")
    p.set_defaults(func=run)


def resolve_policy_dir(path: str) -> Path:
    """A run's output directory stands for the ``policy/`` inside it."""
    given = Path(path)
    if not (given / "config.json").exists() and (given / "policy" / "config.json").exists():
        return given / "policy"
    return given


def find_reference(policy_dir: Path, explicit: str | None) -> str:
    """The reference of a run: ``--ref``, else ``reference/`` beside ``policy/``, else the
    run's ``ref_model`` or initial ``model`` from its ``config.yaml``."""
    from prefkit.config import RunConfig, load
    from prefkit.errors import InputError

    if explicit:
        return explicit
    run_dir = policy_dir.parent
    if (run_dir / "reference" / "config.json").exists():
        return str(run_dir / "reference")
    if (run_dir / "config.yaml").exists():
        cfg = load(RunConfig, run_dir / "config.yaml")
        candidate = cfg.ref_model or cfg.model
        if candidate != "tiny":
            return candidate
    raise InputError("cannot tell which reference this policy was trained against; pass --ref DIR",
                     file=str(policy_dir), field="ref")


def pairs_accuracy(policy, reference, path: str, cfg, fmt=None) -> dict[str, Any]:
    """How often ``log pi/pi_ref`` ranks chosen above rejected; with an inference format ``fmt``
    the policy reads ``fmt.apply(prompt)`` (the reference the plain prompt)."""
    from dataclasses import replace

    from prefkit.data import read_pairs
    from prefkit.engine.offline.examples import tokenize_pairs
    from prefkit.engine.offline.refcache import reference_logps

    records, report = read_pairs(path)
    examples = tokenize_pairs(policy, records, cfg)
    conditioned = examples if fmt is None else tokenize_pairs(
        policy, [replace(r, prompt=fmt.apply(r.prompt)) for r in records], cfg)
    pol, _ = reference_logps(conditioned, policy, cfg, use_cache=False)
    ref, _ = reference_logps(examples, reference, cfg, use_cache=False)
    margin = (pol[:, 0] - ref[:, 0]) - (pol[:, 1] - ref[:, 1])
    labels = examples.labels
    decided = labels != 0.5
    right = ((margin > 0) & (labels > 0.5)) | ((margin < 0) & (labels < 0.5))
    n = int(decided.sum())
    return {
        "accuracy": float(right[decided].float().mean()) if n else None,
        "n": n,
        "ties": int((~decided).sum()),
        "mean_margin": float(margin[decided].mean()) if n else None,
        "truncated_rows": examples.truncated,
        "skipped_rows": len(report.skipped) if hasattr(report, "skipped") else 0,
    }


def run(args: argparse.Namespace) -> int:
    from prefkit.config import RunConfig, load
    from prefkit.data.hindsight import read_inference_format
    from prefkit.policy import Policy

    cfg = load(RunConfig, None, [f"seed={args.seed}", *args.overrides])
    policy_dir = resolve_policy_dir(args.policy)
    policy = Policy.load(policy_dir, device=cfg.train.device)
    reference = Policy.load(find_reference(policy_dir, args.ref), device=cfg.train.device)
    if args.world:
        from prefkit.engine.evaluation import evaluate_on_world
        from prefkit.sim import make_world
        from prefkit.sim.evaluation import candidate_pool

        world = make_world(args.world, seed=args.seed)
        pool = None
        if world.config.cyclic_strength > 0:
            import numpy as np

            prompts = world.prompts("eval", cfg.eval.prompts)
            pool = candidate_pool(world, prompts, cfg.eval.samples, np.random.default_rng(args.seed + 7))
        fmt = read_inference_format(policy_dir)
        if fmt is not None:  # e.g. a Chain of Hindsight policy: prompted after the positive phrase
            from prefkit.engine.offline.hindsight import evaluate_formatted_on_world

            result, _ = evaluate_formatted_on_world(policy, reference, world, cfg.eval, fmt, seed=args.seed, pool=pool)
        else:
            result, _ = evaluate_on_world(policy, reference, world, cfg.eval, seed=args.seed, pool=pool)
        out = {"world": args.world, **{k: v for k, v in result.as_dict().items() if v is not None and v != {}}}
        if fmt is not None:
            out["prompt_template"] = fmt.template
    else:
        fmt = read_inference_format(policy_dir)
        out = {"data": args.data, **pairs_accuracy(policy, reference, args.data, cfg.train, fmt)}
        if fmt is not None:
            out["prompt_template"] = fmt.template
    if args.json:
        print(json.dumps(out))
    else:
        for key, value in out.items():
            print(f"{key:>20s}: {value:.4f}" if isinstance(value, float) else f"{key:>20s}: {value}")
    return 0
