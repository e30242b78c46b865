"""Ordinal reward model vs Bradley-Terry on the binarised pairs, on the world's ratings.

Per seed: ``prefkit.sim.ratings.rated_lists`` (the transitive world, 4 base responses per prompt,
all rated 1-5 by one rater of the default pool: balanced, harsh, lenient, noisy) is the training
feedback. Models (tiny Llama backbone, hidden 32, 2 layers, same steps, batch and lr):

- ``ordinal`` (likelihood) and ``ordinal`` (GNOLR-style nested objectives) on every rated completion;
- ``bt`` on the binarised pairs: best vs worst per list (RLHF Workflow's max_min, one pair per list)
  and all pairs with a rating gap of at least 1.

Held-out: pairs of base responses on the world's eval prompts, labelled by the true preference;
accuracy = P(truly preferred beats the other) > 1/2.

    PYTHONPATH=. python benchmarks/feedback_ordinal.py [--seeds 3] [--lists 400] [--steps 200]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace

import numpy as np
import torch

from benchmarks.feedback_common import TINY, machine, mean_sd, truth_pairs
from prefkit.config import RewardModelConfig, RunConfig, TrainConfig
from prefkit.data.binarize import binarize
from prefkit.engine.preference.ordinal import train_ordinal_model
from prefkit.engine.preference.train import train_preference_model
from prefkit.preference import evaluate_pairs
from prefkit.sim import make_world
from prefkit.sim.ratings import rated_lists


def config(out: str, kind: str, seed: int, args: argparse.Namespace, **rm) -> RunConfig:
    return RunConfig(seed=seed, out=out, tiny=TINY, rm=RewardModelConfig(kind=kind, dropout=0.0, **rm),
                     train=TrainConfig(steps=args.steps, batch_size=32, lr=args.lr, max_length=48, log_every=10**6,
                                       threads=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--lists", type=int, default=400)
    parser.add_argument("--eval-pairs", type=int, default=600)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--lr", type=float, default=1e-3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"# {machine()}")
    models = ("ordinal (likelihood)", "ordinal (nested)", "bt, best vs worst", "bt, all pairs gap >= 1")
    results: dict[str, list[float]] = {m: [] for m in models}
    seconds: dict[str, list[float]] = {m: [] for m in models}
    counts: dict[str, list[int]] = {m: [] for m in models}
    for seed in range(args.seeds):
        world = make_world("transitive", seed=seed)
        ratings = rated_lists(world, args.lists, 4, np.random.default_rng([seed, 5]), levels=5)
        test = truth_pairs(world, args.eval_pairs, seed)
        best_worst, _ = binarize(ratings, rule="best_worst", rng=np.random.default_rng(seed))
        all_pairs, _ = binarize(ratings, rule="all_pairs", margin=1.0, rng=np.random.default_rng(seed))
        for name, n in zip(models, (4 * len(ratings), 4 * len(ratings), len(best_worst), len(all_pairs))):
            counts[name].append(n)
        for name in models:
            began = time.perf_counter()
            with tempfile.TemporaryDirectory() as out:
                if name.startswith("ordinal"):
                    variant = "nested" if "nested" in name else "likelihood"
                    cfg = config(out, "ordinal", seed, args, scale="1-5", ordinal_variant=variant)
                    model = train_ordinal_model(cfg, ratings=ratings, save=False).model
                else:
                    cfg = config(out, "bt", seed, args)
                    pairs = best_worst if "best" in name else all_pairs
                    model = train_preference_model(replace(cfg), records=pairs, save=False).model
            accuracy = evaluate_pairs(model, test, batch_size=256)["accuracy"]
            results[name].append(accuracy)
            seconds[name].append(time.perf_counter() - began)
            print(f"seed {seed} | {name} | train examples {counts[name][-1]} | held-out acc {accuracy:.3f} | "
                  f"{seconds[name][-1]:.0f}s", flush=True)
    print(f"\n{args.lists} rated lists of 4 per seed (1-5), {args.steps} steps of 32, lr {args.lr}; "
          f"held-out: {args.eval_pairs} world eval pairs labelled by P*\n")
    print(f"| model | training examples (mean per seed) | held-out pair accuracy (mean ± sd, {args.seeds} seeds) | per seed | s per run |")
    print("|---|---:|---:|---|---:|")
    for name in models:
        per_seed = ", ".join(f"{x:.3f}" for x in results[name])
        print(f"| {name} | {np.mean(counts[name]):.0f} | {mean_sd(results[name])} | {per_seed} | {np.mean(seconds[name]):.0f} |")


if __name__ == "__main__":
    main()
