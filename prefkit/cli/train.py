"""``prefkit train``: one method, one dataset, one model, through the one engine."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a policy with any method",
        description=(
            "Train a policy. Settings resolve as: defaults <- --config YAML <- flags <- key=value "
            "overrides (e.g. train.lr=3e-4 loss.beta=0.1 tiny.hidden_size=128). "
            "`prefkit train --list-methods` lists the methods."
        ),
    )
    p.add_argument("--method", help="method name (see --list-methods)")
    p.add_argument("--data", help="JSONL/Parquet file: pairs, ranked lists, or prompts (online)")
    p.add_argument("--model", help="'tiny' or a local Hugging Face checkpoint directory")
    p.add_argument("--ref-model", help="reference policy directory (default: the initial policy)")
    p.add_argument("--out", help="output directory")
    p.add_argument("--config", help="YAML file with settings")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--allow-config-change", action="append", metavar="KEY", default=[],
                   help="with --resume: an optimisation key (e.g. train.lr; repeat or comma-separate for several) "
                        "that may differ from the checkpoint's; the change is recorded in metrics.json")
    p.add_argument("--world", help="evaluate on this simulated world at eval steps and at the end")
    p.add_argument("--list-methods", action="store_true", help="list the methods and exit")
    p.add_argument("--rl", action="store_true",
                   help="--method genrm: Think-RM's RL step after the SFT: GRPO on the judge, reward = agreement with the "
                        "label (genrm.rl=true; genrm.rl_steps, online.samples_per_prompt; writes OUT/rl/)")
    p.add_argument("--json", action="store_true", help="print the final metrics as one JSON object")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="dotted config overrides")
    p.set_defaults(func=run, multiprocess=True)


def resolve_config(args: argparse.Namespace):
    from prefkit.config import RunConfig, load

    flags = []
    for flag, key in (("method", "method"), ("model", "model"), ("ref_model", "ref_model"), ("out", "out"),
                      ("data", "data.path"), ("world", "eval.world")):
        value = getattr(args, flag, None)
        if value is not None:
            flags.append(f"{key}={json.dumps(value)}")
    if getattr(args, "rl", False):
        flags.append("genrm.rl=true")
    return load(RunConfig, args.config, [*flags, *args.overrides])


def run(args: argparse.Namespace) -> int:
    from prefkit.engine import METHODS, train
    from prefkit.engine.evaluation import world_evaluator
    from prefkit.engine.methods import get_method
    from prefkit.engine.offline.hindsight import formatted_world_evaluator, inference_format_of
    from prefkit.engine.run import launched_rank

    if args.list_methods:
        for name in sorted(METHODS):
            m = METHODS[name]
            print(f"{name:16s} {m.step:9s} {m.summary}")
        return 0
    cfg = resolve_config(args)
    if args.method is None and not args.config:
        raise ValueError("--method is required (see --list-methods)")
    fmt = inference_format_of(cfg)
    evaluate = None
    if cfg.eval.world and get_method(cfg.method).step != "genrm":  # a judge is scored on held-out world pairs
        evaluate = formatted_world_evaluator(cfg, fmt) if fmt is not None else world_evaluator(cfg)
    if args.allow_config_change and not args.resume:
        raise ValueError("--allow-config-change applies to --resume only")
    allowed = [key.strip() for item in args.allow_config_change for key in item.split(",") if key.strip()]
    result = train(cfg, resume=args.resume, evaluate=evaluate, allow_config_change=allowed)
    if launched_rank() != 0:
        return 0  # the main process reports for the whole job
    if args.json:
        print(json.dumps(result.metrics))
    else:
        m = result.metrics
        loss = f"{m['final_loss']:.4f}" if m.get("final_loss") is not None else "none (no training)"
        speed = f"{m['tokens_per_s']:.0f}" if m.get("tokens_per_s") is not None else "-"
        print(f"{m['method']}: {m['steps']} steps, final loss {loss}, {speed} tokens/s, {m['wall_s']:.1f}s -> {cfg.out}")
        for key, value in m.items():
            if key.startswith("eval/"):
                print(f"  {key}: {value:.4f}" if isinstance(value, float) else f"  {key}: {value}")
    return 0
