"""Language feedback on the world: Chain of Hindsight vs ILF vs SFT on the chosen responses vs DPO,
on the same feedback budget (3 seeds).

Every method starts from the same SFT reference (``benchmarks.feedback_common.reference_policy``:
a tiny Llama fitted on the world's base responses) and spends ``--budget`` feedback items:

- ``sft (chosen)``, ``dpo``, ``coh``: ``budget`` pairs of base responses labelled by the world's
  annotator pool (alpacafarm: noisy, some biased annotators);
- ``ilf``: ``budget / 2`` critiques of base responses by the world's critic, then a second round
  critiquing the policy's own answers on the same prompts (``budget`` critiques in all); the world's
  imperfect refiner (skill 0.8, slip 0.1) writes 5 refinements per critique and the world's ground
  truth (fraction of issues fixed) selects one.

Evaluation: win-rate against the reference under the true preference P* on held-out eval prompts
(64 prompts x 4 samples, temperature 0.7) and KL(pi || ref); CoH samples after its positive phrase
("User: {x} A helpful answer:"), cut at the next feedback phrase.

    PYTHONPATH=. python benchmarks/feedback_language.py [--seeds 3] [--budget 800] [--steps 400] [--dpo-steps 150]
"""

from __future__ import annotations

import argparse
import copy
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from benchmarks.feedback_common import EVAL, base_config, fresh, machine, mean_sd, reference_policy
from prefkit.config import HindsightConfig, ILFConfig, LossConfig
from prefkit.data.hindsight import hindsight_format
from prefkit.engine import TrainData, train
from prefkit.engine.evaluation import evaluate_on_world, sample_texts
from prefkit.engine.offline.hindsight import evaluate_formatted_on_world
from prefkit.policy import Policy

OUT = Path("runs/bench_feedback")
METHODS = ("sft (chosen)", "dpo", "coh", "ilf")


def copy_of(policy: Policy) -> Policy:
    return Policy(copy.deepcopy(policy.model).train().requires_grad_(True), policy.tokenizer)


def run(method: str, seed: int, world, reference: Policy, ref_samples, args: argparse.Namespace) -> dict[str, float]:
    out = fresh(OUT / "runs" / f"{method.split()[0]}-{seed}")
    rng = np.random.default_rng([seed, 3])
    pairs = world.pairs(args.budget, rng)
    policy = copy_of(reference)
    fmt = None
    if method == "dpo":
        cfg = base_config("dpo", out, seed, steps=args.dpo_steps or args.steps, lr=args.dpo_lr)
        cfg = replace(cfg, loss=LossConfig(beta=args.beta))
        data = TrainData(pairs=pairs)
    elif method == "sft (chosen)":
        cfg = base_config("sft", out, seed, steps=args.steps, lr=args.sft_lr)
        data = TrainData(pairs=pairs)
    elif method == "coh":
        cfg = replace(base_config("coh", out, seed, steps=args.steps, lr=args.sft_lr, max_length=96),
                      coh=HindsightConfig())
        data = TrainData(pairs=pairs)
        fmt = hindsight_format(0, [0])
    else:
        cfg = replace(base_config("ilf", out, seed, steps=args.steps, lr=args.sft_lr),
                      ilf=ILFConfig(rounds=2, refinements=5, prompts=args.budget // 2, max_new_tokens=16))
        data = None
    cfg = replace(cfg, eval=replace(cfg.eval, world="transitive"))
    began = time.perf_counter()
    result = train(cfg, data=data, policy=policy, reference=reference, progress=False)
    seconds = time.perf_counter() - began
    if fmt is not None:
        evaluation, _ = evaluate_formatted_on_world(result.policy, reference, world, EVAL, fmt, seed=seed + 2,
                                                    ref_samples=ref_samples)
    else:
        evaluation, _ = evaluate_on_world(result.policy, reference, world, EVAL, seed=seed + 2,
                                          ref_samples=ref_samples)
    row = {"win_rate": evaluation.win_rate, "se": evaluation.win_rate_se, "kl": evaluation.kl,
           "utility": evaluation.mean_utility, "seconds": seconds}
    if fmt is not None:  # does the phrase condition the policy? the same prompts after the negative phrase
        from prefkit.data.hindsight import PHRASES, InferenceFormat
        from prefkit.engine.offline.hindsight import sample_formatted

        negative = InferenceFormat("User: {prompt} " + PHRASES[0][1], fmt.stops)
        prompts = world.prompts("eval", EVAL.prompts)
        answers, _ = sample_formatted(result.policy, prompts, negative, EVAL, seed + 2)
        row["negative_utility"] = float(np.mean(world.utility([p for p in prompts for _ in range(EVAL.samples)],
                                                             [a for r in answers for a in r])))
    if method == "ilf":
        row["selected_incorporation"] = float(np.mean([r["selected_incorporation"] for r in result.metrics["rounds"]]))
        row["critiques"] = result.metrics["critiques"]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--budget", type=int, default=800, help="feedback items per method")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--sft-lr", type=float, default=2e-3, help="SFT, CoH and ILF")
    parser.add_argument("--dpo-lr", type=float, default=3e-5)
    parser.add_argument("--dpo-steps", type=int, default=None, help="DPO's steps (default --steps)")
    parser.add_argument("--beta", type=float, default=0.1)
    parser.add_argument("--sft-steps", type=int, default=300, help="the reference's SFT")
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"# {machine()}")
    rows: dict[str, list[dict[str, float]]] = {m: [] for m in args.methods}
    for seed in range(args.seeds):
        world, reference = reference_policy(seed, OUT, steps=args.sft_steps)
        reference.model.eval().requires_grad_(False)
        ref_samples = sample_texts(reference, world.prompts("eval", EVAL.prompts), EVAL, seed + 1)
        for method in args.methods:
            row = run(method, seed, world, reference, ref_samples, args)
            rows[method].append(row)
            extra = (f" | selected incorporation {row['selected_incorporation']:.3f}"
                     if "selected_incorporation" in row else "")
            if "negative_utility" in row:
                extra += f" | utility after the negative phrase {row['negative_utility']:.2f}"
            print(f"seed {seed} | {method} | win-rate {row['win_rate']:.3f} ± {row['se']:.3f} | KL {row['kl']:.2f} | "
                  f"utility {row['utility']:.2f}{extra} | {row['seconds']:.0f}s", flush=True)
    print(f"\nbudget {args.budget} feedback items, {args.steps} steps of 32 (SFT/CoH/ILF lr {args.sft_lr}; DPO "
          f"{args.dpo_steps or args.steps} steps, lr {args.dpo_lr}, beta {args.beta}); eval {EVAL.prompts} prompts x "
          f"{EVAL.samples} samples\n")
    print("| method | feedback | win-rate vs reference (mean ± sd) | per seed | KL(π‖ref) | mean utility | s per run |")
    print("|---|---|---:|---|---:|---:|---:|")
    feedback = {"sft (chosen)": f"{args.budget} pairs", "dpo": f"{args.budget} pairs", "coh": f"{args.budget} pairs",
                "ilf": f"{args.budget} critiques (2 rounds)"}
    for method in args.methods:
        r = rows[method]
        per_seed = ", ".join(f"{x['win_rate']:.3f}" for x in r)
        print(f"| {method} | {feedback[method]} | {mean_sd([x['win_rate'] for x in r])} | {per_seed} | "
              f"{np.mean([x['kl'] for x in r]):.2f} | {np.mean([x['utility'] for x in r]):.2f} | "
              f"{np.mean([x['seconds'] for x in r]):.0f} |")


if __name__ == "__main__":
    main()
