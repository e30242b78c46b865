"""``prefkit rm``: train, evaluate and denoise with preference models (docs/preference.md).

- ``rm train --kind bt|gpm|pairpm --data FILE --model tiny|PATH --out DIR [key=value ...]``
- ``rm train --kind ordinal --scale 1-5 --data RATINGS --model tiny|PATH --out DIR`` (graded ratings)
- ``rm eval --model DIR --data FILE [--json]`` -> ``{"accuracy", "n", "ties", ...}`` (pairs, or a
  ratings file: every within-list pair with different ratings)
- ``rm strength --data FILE --out FILE [--models DIR ... | --members M] [--action ...]``
"""

from __future__ import annotations

import argparse
import json
from typing import Any

KINDS = ("bt", "gpm", "pairpm")
TRAIN_KINDS = (*KINDS, "ordinal")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("rm", help="preference models: train, evaluate, preference strength",
                       description="Bradley-Terry reward models, general preference embedding models (GPM) and "
                                   "pairwise preference models (docs/preference.md).")
    rm_sub = p.add_subparsers(dest="rm_command", metavar="SUBCOMMAND", required=True)

    t = rm_sub.add_parser(
        "train", help="train a preference model on pairs",
        description="Train a preference model on prompt/chosen/rejected pairs through the training engine. "
                    "Settings resolve as: defaults <- the kind's defaults (docs/preference.md: separate head "
                    "learning rate rm.head_lr, warm-up, train.epochs; a from-scratch rate and 40 epochs for the "
                    "random tiny preset, 3 epochs for a checkpoint) <- --config YAML <- flags <- key=value overrides "
                    "(rm.dim=4 rm.tau=0.1 rm.eigenvalues=prompt rm.label_smoothing=0.1 train.steps=500 "
                    "tiny.hidden_size=64 ...). Writes DIR/model (load with `prefkit rm eval --model DIR`).",
    )
    t.add_argument("--kind", choices=TRAIN_KINDS, help="bt (scalar reward), gpm (general preference embedding), "
                                                       "pairpm (pairwise classifier), ordinal (a reward with "
                                                       "ordered thresholds, on ratings); default bt")
    t.add_argument("--scale", help="--kind ordinal: the integer rating scale LOW-HIGH (e.g. 1-5, 1-10; rm.scale)")
    t.add_argument("--data", help="JSONL/Parquet pairs (TRL prompt/chosen/rejected; label 0.5 = tie), or for "
                                  "--kind ordinal ratings (prompt/completions/ratings or prompt/completion/rating)")
    t.add_argument("--eval-data", help="pairs to evaluate on at eval steps and at the end")
    t.add_argument("--model", help="'tiny' or a local Hugging Face causal LM or encoder directory")
    t.add_argument("--out", help="output directory")
    t.add_argument("--config", help="YAML file with settings")
    t.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    t.add_argument("--allow-config-change", action="append", metavar="KEY", default=[],
                   help="with --resume: an optimisation key (e.g. train.lr) that may differ from the checkpoint's")
    t.add_argument("--json", action="store_true", help="print the final metrics as one JSON object")
    t.add_argument("overrides", nargs="*", metavar="key=value", help="dotted config overrides")
    t.set_defaults(func=run, multiprocess=True)

    e = rm_sub.add_parser(
        "eval", help="pairwise accuracy of a trained preference model",
        description="A pair is right when P(chosen beats rejected) > 1/2; ties (label 0.5) are reported apart.",
    )
    e.add_argument("--model", required=True, help="a preference-model directory, an `rm train` run directory, "
                   "llm:SPEC (a language model asked which response is better, in both orders: llm:DIR, "
                   "llm:openai:MODEL) or rubric:FILE (a rubric-conditioned judge, `prefkit rubrics`)")
    e.add_argument("--judge-labels", default=None, metavar="X,Y",
                   help="llm:/rubric: judges: the two answer labels (default A,B, or the first pair the "
                        "judge's tokenizer tells apart)")
    e.add_argument("--judge-template", default=None, metavar="FILE",
                   help="llm:/rubric: judges: a file holding the judge prompt template (docs/preference.md)")
    e.add_argument("--data", required=True, help="JSONL/Parquet pairs")
    e.add_argument("--batch-size", type=int, default=64)
    e.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:N")
    e.add_argument("--json", action="store_true", help="print one JSON object")
    e.set_defaults(func=run)

    s = rm_sub.add_parser(
        "strength", help="ensemble preference strength, uncertainty and noisy-label handling",
        description="Score every pair with an ensemble of preference models (given with --models, or trained here "
                    "with --members M seeds and data orders): strength_mean/strength_std of logit P(chosen beats "
                    "rejected) (Secrets of RLHF II). Optionally BALD (MC-dropout) and each pair's training-loss "
                    "outlier score. Flag the --fraction most suspicious pairs by --detector and flip, smooth or "
                    "drop them (--action). Writes the rows with the added columns to --out.",
    )
    s.add_argument("--data", required=True, help="JSONL/Parquet pairs")
    s.add_argument("--out", required=True, metavar="FILE", help="output .jsonl")
    s.add_argument("--models", nargs="+", metavar="DIR", help="trained preference models (default: train --members)")
    s.add_argument("--members", type=int, default=5, help="models to train when --models is not given (default 5)")
    s.add_argument("--kind", choices=KINDS, help="kind of the models trained here (default bt)")
    s.add_argument("--model", default=None, help="backbone of the models trained here (default tiny)")
    s.add_argument("--work", default=None, help="keep the trained members here (default: a temporary directory)")
    s.add_argument("--config", help="YAML settings for the members trained here")
    s.add_argument("--bald", type=int, default=0, metavar="T", help="MC-dropout passes for BALD (0: off)")
    s.add_argument("--detector", choices=("ensemble", "bald", "dynamics"), default="ensemble",
                   help="which score flags pairs: lowest strength, highest BALD, or highest loss history")
    s.add_argument("--fraction", type=float, default=0.0, help="fraction of pairs to flag (default 0: none)")
    s.add_argument("--action", choices=("none", "flip", "smooth", "drop"), default="none",
                   help="what to do with flagged pairs (smooth: label <- sigmoid(strength_mean))")
    s.add_argument("--batch-size", type=int, default=64)
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides for the members trained here")
    s.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.rm_command == "train":
        return _train(args)
    if args.rm_command == "eval":
        return _eval(args)
    return _strength(args)


def _config(args: argparse.Namespace, extra: list[str] | None = None):
    """Defaults of the kind (prefkit.preference.defaults) <- --config YAML <- flags <- overrides."""
    from prefkit.preference.defaults import preference_config

    flags = []
    for flag, key in (("kind", "rm.kind"), ("scale", "rm.scale"), ("model", "model"), ("out", "out"),
                      ("data", "data.path"), ("eval_data", "data.eval_path")):
        value = getattr(args, flag, None)
        if value is not None:
            flags.append(f"{key}={json.dumps(value)}")
    return preference_config(args.config, [*flags, *(extra or []), *args.overrides])


def _train(args: argparse.Namespace) -> int:
    from prefkit.engine.preference.train import train_preference_model
    from prefkit.engine.run import launched_rank

    cfg = _config(args)
    if cfg.data.path is None:
        raise ValueError("--data is required")
    if args.out is None and not args.config:
        raise ValueError("--out is required")
    result = train_preference_model(cfg, resume=args.resume, progress=None if not args.json else False,
                                    allow_config_change=[k.strip() for item in args.allow_config_change
                                                         for k in item.split(",") if k.strip()])
    if launched_rank() != 0:
        return 0  # the main process reports for the whole job
    metrics = {**result.metrics, "out": cfg.out, "model_dir": f"{cfg.out}/model"}
    if args.json:
        print(json.dumps(metrics))
    else:
        examples = (f"{metrics['rated_completions']} rated completions" if metrics["kind"] == "ordinal"
                    else f"{metrics['pairs']} pairs")
        print(f"rm {metrics['kind']}: {metrics['steps']} steps on {examples}, final loss "
              f"{metrics['final_loss']:.4f}, {metrics['wall_s']:.1f}s -> {cfg.out}/model")
        for key, value in metrics.items():
            if key.startswith("eval/") and value is not None:
                print(f"  {key}: {value:.4f}" if isinstance(value, float) else f"  {key}: {value}")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from prefkit.data import read_pairs
    from prefkit.data.ratings import detect_feedback_kind
    from prefkit.preference.evaluation import evaluate_pairs
    from prefkit.preference.io import load_preference_model

    if args.batch_size <= 0:
        raise ValueError(f"--batch-size must be positive, got {args.batch_size}")
    language = args.model.startswith(("llm:", "rubric:"))
    if (args.judge_labels or args.judge_template) and not language:
        raise ValueError("--judge-labels and --judge-template apply to llm: and rubric: judges only")
    if language:
        from prefkit.preference.judge_specs import language_judge

        model: Any = language_judge(args.model, labels=args.judge_labels, template=args.judge_template,
                                    device=args.device)
    else:
        model = load_preference_model(args.model, device=args.device)
    extra: dict[str, Any] = {}
    if detect_feedback_kind(args.data) in ("ratings", "rating"):
        records, extra = ratings_as_pairs(args.data, model, args.model, batch_size=args.batch_size)
    else:
        records, _ = read_pairs(args.data)
    result: dict[str, Any] = {**evaluate_pairs(model, records, batch_size=args.batch_size), **extra,
                              "kind": model.kind, "model": args.model, "data": args.data}
    if hasattr(getattr(model, "backbone", None), "collate"):
        result["truncated"] = _count_truncated(model, records)
    backend = getattr(model, "backend", None)
    if backend is not None:
        result["labels"] = list(model.labels)
        result["llm"] = backend.summary()
    if args.json:
        print(json.dumps(result))
    else:
        acc = result["accuracy"]
        print(f"{model.kind} on {args.data}: accuracy {acc:.4f} over {result['n']} pairs"
              if acc is not None else f"{model.kind} on {args.data}: no decided pairs (all ties)")
        if result["ties"]:
            print(f"  ties: {result['ties']} (mean |P - 1/2| = {result['tie_mean_abs_deviation']:.4f})")
        print(f"  log loss {result['log_loss']:.4f}; truncated rows {result.get('truncated', 0)}")
        if "rating_accuracy" in result:
            print(f"  ratings: class accuracy {result['rating_accuracy']:.4f}, MAE {result['rating_mae']:.4f}")
    return 0


def ratings_as_pairs(path: str, model: Any, model_dir: str, *, batch_size: int) -> tuple[list, dict[str, Any]]:
    """A ratings file for ``rm eval``: every pair of completions of one rated list (single ratings:
    of one prompt and annotator) with different ratings, the higher-rated as chosen; for an ordinal
    model on its own scale also the class accuracy and the MAE of the expected rating."""
    import numpy as np

    from prefkit.data.binarize import binarize, group_ratings
    from prefkit.data.ratings import RatingRecord, read_ratings
    from prefkit.preference.io import read_manifest

    scale = None
    if model.kind == "ordinal":
        trained = read_manifest(model_dir).get("trained") or {}
        scale = tuple(trained["scale"]) if "scale" in trained else None
    ratings, _ = read_ratings(path, scale=scale, integer=scale is not None)
    lists = group_ratings(ratings) if ratings and isinstance(ratings[0], RatingRecord) else list(ratings)
    pairs, report = binarize(lists, rule="all_pairs", margin=1e-9, rng=np.random.default_rng(0))
    if not pairs:
        raise ValueError(f"{path}: no two completions of one list have different ratings; nothing to rank")
    extra: dict[str, Any] = {"pairs_from_ratings": report.to_json()}
    if scale is not None:
        import torch

        prompts = [r.prompt for r in lists for _ in r.completions]
        completions = [c for r in lists for c in r.completions]
        rated = torch.tensor([x for r in lists for x in r.ratings], dtype=torch.float64)
        probs = model.class_probabilities(prompts, completions, batch_size=batch_size).double()
        low = scale[0]
        extra["rating_accuracy"] = float((probs.argmax(1) + low == rated).double().mean())
        expected = probs @ (low + torch.arange(probs.shape[1], dtype=torch.float64))
        extra["rating_mae"] = float((expected - rated).abs().mean())
    return pairs, extra


def _count_truncated(model: Any, records: list) -> int:
    backbone = model.backbone
    responses = [[r.chosen for r in records], [r.rejected for r in records]]
    if model.kind == "pairpm":
        rows = backbone.prepare([r.prompt for r in records], *responses)
    else:
        rows = backbone.prepare([r.prompt for r in records] * 2, responses[0] + responses[1])
    return sum(1 for row in rows if backbone.row_length(row) > backbone.max_length)


def _strength(args: argparse.Namespace) -> int:
    import dataclasses
    import tempfile
    from pathlib import Path

    import torch

    from prefkit.cli.sim import write_jsonl_atomic
    from prefkit.data import read_pairs
    from prefkit.engine.preference.train import train_preference_model
    from prefkit.preference import noise
    from prefkit.preference.io import load_preference_model

    if not 0.0 <= args.fraction < 1.0:
        raise ValueError(f"--fraction must be in [0, 1), got {args.fraction}")
    if args.action != "none" and args.fraction == 0:
        raise ValueError(f"--action {args.action} needs --fraction > 0 (how many pairs to flag)")
    if args.bald < 0 or args.bald == 1:
        raise ValueError(f"--bald needs 0 (off) or at least 2 passes, got {args.bald}")
    records, _ = read_pairs(args.data)
    models, loss_scores = [], None
    if args.models:
        if args.detector == "dynamics":
            raise ValueError("--detector dynamics needs the members' training losses: train them here (no --models)")
        models = [load_preference_model(d) for d in args.models]
    else:
        if args.members < 1:
            raise ValueError(f"--members must be positive, got {args.members}")
        temporary = None if args.work else tempfile.TemporaryDirectory(prefix="prefkit-strength-")
        work = Path(args.work) if args.work else Path(temporary.name)
        base = _config(argparse.Namespace(**{**vars(args), "out": None, "eval_data": None, "data": None}))
        per_member = []
        try:
            for m in range(args.members):
                cfg = dataclasses.replace(base, seed=base.seed + m, out=str(work / f"member-{m}"))
                trained = train_preference_model(cfg, records=records, save=bool(args.work), progress=False)
                models.append(trained.model)
                losses = torch.zeros(len(records))
                kept = [i for i, r in enumerate(records) if not (cfg.rm.ties == "exclude" and r.label == 0.5)]
                losses[kept] = trained.losses.mean().float()
                per_member.append(noise.loss_outlier_scores(losses))
        finally:
            if temporary is not None:
                temporary.cleanup()
        loss_scores = torch.stack(per_member).mean(0)
    mean, std, _ = noise.ensemble_strength(models, records, batch_size=args.batch_size)
    bald_scores = None
    if args.bald:
        bald_scores = torch.stack([
            noise.bald(noise.mc_dropout_probabilities(m, records, passes=args.bald, batch_size=args.batch_size, seed=i))
            for i, m in enumerate(models)
        ]).mean(0)
    count = round(args.fraction * len(records))
    flagged = torch.zeros(len(records), dtype=torch.bool)
    if count:
        scores = noise.suspicion(args.detector, strength_mean=mean, bald_scores=bald_scores, loss_scores=loss_scores)
        flagged = noise.flag_top(scores, count)
    rows = []
    for i, record in enumerate(records):
        row = record.to_json()
        row.update(strength_mean=float(mean[i]), strength_std=float(std[i]))
        if bald_scores is not None:
            row["bald"] = float(bald_scores[i])
        if loss_scores is not None:
            row["loss_z"] = float(loss_scores[i])
        row["flagged"] = bool(flagged[i])
        if flagged[i] and args.action == "drop":
            continue
        if flagged[i] and args.action == "flip":
            row["chosen"], row["rejected"] = row["rejected"], row["chosen"]
            row["strength_mean"] = -row["strength_mean"]
        if flagged[i] and args.action == "smooth":
            row["label"] = float(torch.sigmoid(mean[i]))
        rows.append(row)
    write_jsonl_atomic(rows, args.out)
    summary = {
        "out": args.out, "pairs": len(records), "written": len(rows), "members": len(models),
        "flagged": int(flagged.sum()), "detector": args.detector, "action": args.action,
        "negative_strength": int((mean < 0).sum()), "mean_strength": float(mean.mean()),
        "mean_spread": float(std.mean()),
    }
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"strength of {len(records)} pairs from {len(models)} models -> {args.out}: "
              f"{summary['negative_strength']} with negative mean strength; flagged {summary['flagged']} "
              f"by {args.detector}, action {args.action}")
    return 0
