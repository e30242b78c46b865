"""A generative pairwise judge vs Bradley-Terry, pairpm and GPM on held-out world pairs (3 seeds).

Per seed: ``--pairs`` pairs of base responses labelled by the transitive world's annotator pool
(alpacafarm) train every model; held-out pairs on the world's eval prompts are labelled by the
true preference P*. Models, all tiny Llama (hidden 32, 2 layers), the same steps, batch and lr:

- ``bt``, ``pairpm``, ``gpm`` (dim 2): ``prefkit rm train`` kinds (a backbone plus a head);
- ``genrm``: a causal LM trained to answer A or B to the judge prompt
  (``prefkit.preference.llm_judge.DEFAULT_TEMPLATE``), both orders of every pair
  (``prefkit train --method genrm``), read as P(A) vs P(B) of its next token, averaged over both
  orders;
- ``genrm + rationale`` (``--rationale``): the same after a rationale naming each response's issues
  in the world's terms (``genrm.rationale=world``), Think-RM's think-then-answer form.

Reported: held-out accuracy, the mean probability given to the truly preferred response (0.5: the
model says nothing; a judge near 0.5 can still rank most pairs by tiny margins) and, for the
generative judges, position consistency (the verdict does not change when the two responses swap
places).

    PYTHONPATH=. python benchmarks/feedback_judges.py [--seeds 3] [--pairs 4000] [--steps 600] [--rationale]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from benchmarks.feedback_common import TINY, machine, mean_sd, truth_pairs
from prefkit.config import GenerativeJudgeConfig, RewardModelConfig, RunConfig, TrainConfig
from prefkit.engine import TrainData, train
from prefkit.engine.preference.train import train_preference_model
from prefkit.llm.hf import HFBackend
from prefkit.preference import evaluate_pairs
from prefkit.preference.generative import GenerativeJudge, judge_report
from prefkit.sim import make_world


def rm_config(out: str, kind: str, seed: int, args: argparse.Namespace) -> RunConfig:
    return RunConfig(seed=seed, out=out, tiny=TINY, rm=RewardModelConfig(kind=kind, dropout=0.0),
                     train=TrainConfig(steps=args.steps, batch_size=32, lr=args.lr, max_length=48, log_every=10**6,
                                       threads=1))


def genrm_judge(pairs, test, seed: int, args: argparse.Namespace, rationale: bool, out: str) -> dict[str, float]:
    cfg = RunConfig(method="genrm", seed=seed, out=out, tiny=TINY,
                    genrm=GenerativeJudgeConfig(rationale="world" if rationale else "none"),
                    train=TrainConfig(steps=args.steps, batch_size=32, lr=args.lr, max_length=256 if rationale else 128,
                                      log_every=10**6, threads=1))
    if rationale:
        cfg = replace(cfg, eval=replace(cfg.eval, world="transitive", prompts=8))
    result = train(cfg, data=TrainData(pairs=pairs), progress=False)
    judge = GenerativeJudge(HFBackend(result.policy, batch_size=64), rationale=rationale)
    report = judge_report(judge, test if not rationale else test[:args.rationale_eval], batch_size=64)
    return {"accuracy": report["accuracy"], "p_preferred": report["mean_prob_preferred"],
            "consistency": report["position_consistency"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--pairs", type=int, default=4000)
    parser.add_argument("--eval-pairs", type=int, default=400)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--rationale", action="store_true", help="also the judge with a world rationale")
    parser.add_argument("--rationale-eval", type=int, default=100, help="held-out pairs for the rationale judge")
    parser.add_argument("--models", nargs="*", default=["bt", "pairpm", "gpm", "genrm"],
                        help="any of bt pairpm gpm genrm (none: only the rationale judge, with --rationale)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"# {machine()}")
    models = [*args.models, *(["genrm + rationale"] if args.rationale else [])]
    if not models:
        parser.error("nothing to run: name --models or pass --rationale")
    rows: dict[str, list[dict[str, float]]] = {m: [] for m in models}
    for seed in range(args.seeds):
        world = make_world("transitive", seed=seed)
        pairs = world.pairs(args.pairs, np.random.default_rng([seed, 7]))
        test = truth_pairs(world, args.eval_pairs, seed)
        for name in models:
            began = time.perf_counter()
            with tempfile.TemporaryDirectory() as out:
                if name.startswith("genrm"):
                    row = genrm_judge(pairs, test, seed, args, name != "genrm", str(Path(out) / "run"))
                else:
                    model = train_preference_model(rm_config(out, name, seed, args), records=pairs, save=False).model
                    report = evaluate_pairs(model, test, batch_size=256)
                    row = {"accuracy": report["accuracy"], "p_preferred": report["mean_prob_preferred"]}
            row["seconds"] = time.perf_counter() - began
            rows[name].append(row)
            extra = f" | position consistency {row['consistency']:.3f}" if "consistency" in row else ""
            print(f"seed {seed} | {name} | held-out acc {row['accuracy']:.3f} | mean P(preferred) "
                  f"{row['p_preferred']:.3f}{extra} | {row['seconds']:.0f}s",
                  flush=True)
    print(f"\n{args.pairs} annotator-labelled training pairs per seed, {args.steps} steps of 32, lr {args.lr}; "
          f"held-out: {args.eval_pairs} world eval pairs labelled by P* ({args.rationale_eval} for the rationale "
          "judge)\n")
    print("| model | held-out accuracy (mean ± sd) | per seed | mean P(truly preferred) | position consistency "
          "| s per run |")
    print("|---|---:|---|---:|---:|---:|")
    for name in models:
        r = rows[name]
        per_seed = ", ".join(f"{x['accuracy']:.3f}" for x in r)
        consistency = f"{np.mean([x['consistency'] for x in r]):.3f}" if "consistency" in r[0] else "–"
        print(f"| {name} | {mean_sd([x['accuracy'] for x in r])} | {per_seed} | "
              f"{np.mean([x['p_preferred'] for x in r]):.3f} | {consistency} | "
              f"{np.mean([x['seconds'] for x in r]):.0f} |")


if __name__ == "__main__":
    main()
