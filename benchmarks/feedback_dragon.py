"""DRAGON on the world: a style defined only by exemplars is reached without pairwise labels.

The target is the *playful* style (responses opening with imagine / wow / behold) of the world's best
answers: the exemplars are ``world.ideal_response(prompt, "playful")`` for 64 train prompts. The
policy (the SFT reference of ``benchmarks.feedback_common``) is trained online by ``--method
dragon`` (each sample's cosine similarity to the exemplars' MiniLM centroid) or ``dragon_fd``
(each sample's leave-one-out contribution to the Fréchet distance of the step's samples to the
exemplars): 8 prompts x 4 samples per step, split at the median into positive and negative sets,
DPO (beta 0.1) on their pairs against the reference. No preference label is used.

Measured every ``--every`` steps on 64 held-out eval prompts x 2 samples (temperature 0.7): the
Fréchet distance (all-MiniLM-L6-v2 embeddings) of the samples to the exemplars, the share of
samples in the playful style (``world.styles``), the mean instance reward and the mean true utility.
Two fixed sets give the distance its scale (each 120 texts, about the probe's 128): the ideal answers
of all 120 eval prompts in the playful style (the target on unseen prompts: the floor) and in the
formal style (as good, another style).

    PYTHONPATH=. python benchmarks/feedback_dragon.py [--seeds 3] [--steps 40] [--methods dragon dragon_fd]
"""

from __future__ import annotations

import argparse
import copy
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from benchmarks.feedback_common import base_config, fresh, machine, mean_sd, reference_policy
from prefkit.config import EvalConfig, LossConfig, OnlineConfig
from prefkit.engine import TrainData, train
from prefkit.engine.evaluation import sample_texts
from prefkit.policy import Policy
from prefkit.preference.dragon import ExemplarJudge, ExemplarReward
from prefkit.sim import lexicon as lx

OUT = Path("runs/bench_feedback")
PROBE = EvalConfig(prompts=64, samples=2, max_new_tokens=16)


def probe(world, reward: ExemplarReward, policy: Policy, seed: int) -> dict[str, float]:
    prompts = world.prompts("eval", PROBE.prompts)
    texts = sample_texts(policy, prompts, PROBE, seed).texts
    return scores(world, reward, [p for p in prompts for _ in range(PROBE.samples)], [t for row in texts for t in row])


def scores(world, reward: ExemplarReward, prompts: list[str], texts: list[str]) -> dict[str, float]:
    return {"fd": reward.set_distance(texts),
            "playful": float(np.mean(world.styles(texts) == lx.STYLES.index("playful"))),
            "reward": float(np.mean(reward.instance_rewards(texts))),
            "utility": float(np.mean(world.utility(prompts, texts)))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--every", type=int, default=10)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--beta", type=float, default=0.1)
    parser.add_argument("--methods", nargs="+", default=["dragon"])
    parser.add_argument("--sft-steps", type=int, default=300)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"# {machine()}")
    from prefkit.preference.encoder import SentenceEncoder

    encoder = SentenceEncoder.load()
    finals: dict[str, list[dict[str, float]]] = {m: [] for m in args.methods}
    starts: list[dict[str, float]] = []
    anchors: dict[str, list[dict[str, float]]] = {"playful": [], "formal": []}
    for seed in range(args.seeds):
        world, reference = reference_policy(seed, OUT, steps=args.sft_steps)
        reference.model.eval().requires_grad_(False)
        exemplars = [world.ideal_response(p, "playful") for p in world.prompts("train", 64)]
        reward = ExemplarReward(exemplars, embed=encoder.encode)
        for style in anchors:
            anchors[style].append(scores(world, reward, world.prompts("eval"),
                                         [world.ideal_response(p, style) for p in world.prompts("eval")]))
            a = anchors[style][-1]
            print(f"seed {seed} | ideal {style} answers, 120 eval prompts | FD {a['fd']:.3f} | playful "
                  f"{a['playful']:.3f} | reward {a['reward']:.3f} | utility {a['utility']:.2f}", flush=True)
        start = probe(world, reward, reference, seed + 2)
        starts.append(start)
        print(f"seed {seed} | reference | step 0 | FD {start['fd']:.3f} | playful {start['playful']:.3f} | "
              f"reward {start['reward']:.3f} | utility {start['utility']:.2f}", flush=True)
        for method in args.methods:
            out = fresh(OUT / "runs" / f"{method}-{seed}")
            cfg = base_config(method, out, seed, steps=args.steps, lr=args.lr, world=None)
            cfg = replace(cfg, loss=LossConfig(beta=args.beta), online=OnlineConfig(prompts_per_step=8, max_new_tokens=16),
                          train=replace(cfg.train, eval_every=args.every, log_every=1))
            policy = Policy(copy.deepcopy(reference.model).train().requires_grad_(True), reference.tokenizer)
            curve: list[tuple[int, dict[str, float]]] = []

            def evaluate(p: Policy, ref: Policy | None, step: int, curve=curve, world=world, reward=reward,
                         seed=seed) -> dict[str, float]:
                scores = probe(world, reward, p, seed + 2)
                curve.append((step, scores))
                return {f"probe/{k}": v for k, v in scores.items()}

            began = time.perf_counter()
            train(cfg, data=TrainData(prompts=world.prompts("train")), policy=policy, reference=reference,
                  judge=ExemplarJudge(reward), evaluate=evaluate, progress=False)
            seconds = time.perf_counter() - began
            for step, s in curve:
                print(f"seed {seed} | {method} | step {step} | FD {s['fd']:.3f} | playful {s['playful']:.3f} | "
                      f"reward {s['reward']:.3f} | utility {s['utility']:.2f}", flush=True)
            print(f"seed {seed} | {method} | {seconds:.0f}s", flush=True)
            finals[method].append(curve[-1][1])
    print(f"\n{args.steps} online steps (8 prompts x 4 samples), lr {args.lr}, beta {args.beta}; probe: "
          f"{PROBE.prompts} eval prompts x {PROBE.samples} samples\n")
    print("| policy | Fréchet distance to the exemplars | playful share | instance reward | true utility |")
    print("|---|---:|---:|---:|---:|")
    for style, rows in anchors.items():
        print(f"| ideal answers, {style} style (120 eval prompts) | {mean_sd([s['fd'] for s in rows])} | "
              f"{mean_sd([s['playful'] for s in rows])} | {mean_sd([s['reward'] for s in rows])} | "
              f"{mean_sd([s['utility'] for s in rows])} |")
    print(f"| reference (step 0) | {mean_sd([s['fd'] for s in starts])} | {mean_sd([s['playful'] for s in starts])} | "
          f"{mean_sd([s['reward'] for s in starts])} | {mean_sd([s['utility'] for s in starts])} |")
    for method, rows in finals.items():
        print(f"| {method} (step {args.steps}) | {mean_sd([s['fd'] for s in rows])} | "
              f"{mean_sd([s['playful'] for s in rows])} | {mean_sd([s['reward'] for s in rows])} | "
              f"{mean_sd([s['utility'] for s in rows])} |")


if __name__ == "__main__":
    main()
