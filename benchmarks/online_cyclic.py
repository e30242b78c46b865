"""Cyclic preferences: do the Nash methods beat methods that go through a scalar (Bradley-Terry)
reward, head to head and in exploitability?

On the ``cyclic`` world (a style cycle formal > casual > playful > formal of strength 3 on top of
the utility) the final policies of ``online_compare.py`` (3000 queries each; seeds 1-3) are
joined by methods that score responses with a scalar reward:

- P3O and best-of-4 with a Bradley-Terry reward model fitted on the 3000 annotator pairs (from
  ``online_compare.py``: the demo's entries);
- P3O and best-of-4 with the world's *utility* as their reward: an oracle scalar reward (the
  transitive part of P*, which is what a perfect BT model could at best capture), marked
  "oracle".

Reported: the head-to-head matrix ``M[i, j] = P*(method i beats method j)`` (mean over seeds and
over sample pairs; ``benchmarks/online_cyclic_h2h.png``), each method's exploitability against
the world's candidate pool, and its *style* exploitability (``online_common.style_exploitability``:
how much the best single style beats the policy's style mixture, bodies held equal).

    PYTHONPATH=. python benchmarks/online_cyclic.py [--seeds 1 2 3]
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.online_common import (
    OUT,
    context,
    entry,
    evaluate,
    machine,
    mean_sd,
    style_exploitability,
)
from prefkit.engine import TrainData, train
from prefkit.engine.online.judge import OnlineJudge
from prefkit.engine.online.rollout import Sampler
from prefkit.engine.online.train import best_of_n_texts
from prefkit.policy import Policy
from prefkit.sim.evaluation import evaluate as sim_evaluate
from prefkit.sim.evaluation import win_matrix

SHOWN = ["online DPO", "iterative DPO (3 rounds)", "Nash-MD-PG (mixture 0.125)", "EGPO", "online IPO (OMD)",
         "DNO (3 rounds)", "SPPO (3 rounds)", "GPO (GPM judge)", "P3O (BT reward)", "P3O (annotator win-rate)"]
"""The online policies of ``online_compare.py`` shown head to head (Nash methods, and the methods
that go through a scalar reward or through Bradley-Terry-like pairwise labels)."""


class UtilityReward:
    """The world's utility u(x, y) as a scalar reward (an oracle Bradley-Terry reward model)."""

    def __init__(self, world) -> None:
        self.world = world
        self.name = f"oracle utility of {world.name!r}"

    def embed(self, prompts, responses) -> torch.Tensor:
        return torch.as_tensor(self.world.utility(list(prompts), list(responses)), dtype=torch.float32)[:, None]

    def prob_from_embeddings(self, e_a, e_b) -> torch.Tensor:
        return torch.sigmoid(e_a[:, 0] - e_b[:, 0])

    def prob(self, prompts, a, b) -> torch.Tensor:
        return self.prob_from_embeddings(self.embed(prompts, a), self.embed(prompts, b))


def scalar_reward_methods(ctx, reward, tag: str, out: Path) -> dict[str, list[list[str]]]:
    """P3O trained with ``reward`` (the demo's steps for a reward judge) and best-of-4 with it."""
    samples = {}
    e = entry("p3o", "P3O (BT reward)", online={"reward": "auto", "judge": "bt"})
    from prefkit.demo import online_config

    cfg, _ = online_config(ctx.settings, e, out / f"p3o_{tag}")
    policy = Policy(copy.deepcopy(ctx.reference.model).train().requires_grad_(True), ctx.reference.tokenizer)
    train(cfg, data=TrainData(prompts=ctx.world.prompts("train")), policy=policy,
                 reference=ctx.reference, judge=reward, progress=False)
    scores, texts = evaluate(ctx, policy, cfg.eval)
    samples[f"P3O ({tag})"] = (texts, scores)
    prompts = ctx.world.prompts("eval", ctx.settings.eval.prompts)
    picks = best_of_n_texts(Sampler(ctx.reference, max_new_tokens=ctx.settings.eval.max_new_tokens),
                            OnlineJudge(reward), prompts, ctx.settings.eval.samples, 4, seed=ctx.settings.seed + 2)
    ev = sim_evaluate(ctx.world, prompts, picks, ctx.ref_samples.texts, pool=ctx.pool)
    samples[f"best-of-4 ({tag})"] = (picks, {
        "win_rate": ev.win_rate, "exploitability": ev.exploitability,
        "style_exploitability": style_exploitability(ctx.world, prompts, picks)})
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--tables-only", action="store_true", help="reprint from the saved JSON files")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"machine: {machine()}")
    per_seed = []
    for seed in args.seeds:
        if args.tables_only:
            per_seed.append(json.loads((OUT / f"cyclic_h2h_{seed}.json").read_text(encoding="utf-8")))
            continue
        saved = json.loads((OUT / f"compare_cyclic_{seed}.json").read_text(encoding="utf-8"))
        out = OUT / f"cyclic_extra_{seed}_{time.strftime('%H%M%S')}"
        ctx = context("cyclic", seed, out)
        prompts = ctx.world.prompts("eval", ctx.settings.eval.prompts)
        methods: dict[str, tuple[list[list[str]], dict]] = {"reference (SFT)": (saved["reference_samples"], {"win_rate": 0.5})}
        for curve in saved["online"]:
            if curve["label"] in SHOWN:
                methods[curve["label"]] = (curve["samples"], curve["points"][-1])
        dpo = next(p for p in saved["offline"] if p["method"] == "dpo" and p["labels"] == 3000)
        methods["offline DPO (3000 labels)"] = (dpo["samples"], dpo)
        for reward in ("BT reward", "annotator win-rate"):
            bon = next(p for p in saved["best_of_n"] if p["n"] == 4 and p.get("reward") == reward)
            methods[f"best-of-4 ({reward})"] = (bon["samples"], bon)
        methods.update(scalar_reward_methods(ctx, UtilityReward(ctx.world), "oracle utility reward", out))
        for texts, scores in methods.values():
            if "style_exploitability" not in scores:
                scores["style_exploitability"] = style_exploitability(ctx.world, prompts, texts)
        names, matrix = win_matrix(ctx.world, prompts, {k: v[0] for k, v in methods.items()})
        per_seed.append({"names": names, "matrix": matrix.tolist(),
                         "scores": {k: {m: v[1].get(m) for m in ("win_rate", "exploitability", "style_exploitability")}
                                    for k, v in methods.items()}})
        (OUT / f"cyclic_h2h_{seed}.json").write_text(json.dumps(per_seed[-1]), encoding="utf-8")
        print(f"  seed {seed} done", flush=True)

    names = per_seed[0]["names"]
    matrices = np.array([s["matrix"] for s in per_seed])
    mean = matrices.mean(axis=0)
    print(f"\nHead-to-head on the cyclic world, seeds {args.seeds}: row beats column, P* (mean over seeds)\n")
    print("| row \\ column | " + " | ".join(f"{i + 1}" for i in range(len(names))) + " | mean vs others |")
    print("|---|" + "---|" * (len(names) + 1))
    for i, name in enumerate(names):
        others = np.delete(mean[i], i).mean()
        print(f"| {i + 1}. {name} | " + " | ".join(f"{mean[i, j]:.2f}" for j in range(len(names)))
              + f" | {others:.3f} |")
    print("\n| method | win-rate vs SFT | exploitability (pool) | style exploitability |\n|---|---|---|---|")
    for name in names:
        rows = [s["scores"][name] for s in per_seed]
        print(f"| {name} | {mean_sd([r.get('win_rate') for r in rows])} | "
              f"{mean_sd([r['exploitability'] for r in rows])} | {mean_sd([r['style_exploitability'] for r in rows])} |")
    heat_map(names, mean, Path("benchmarks/online_cyclic_h2h.png"), args.seeds)


def heat_map(names: list[str], matrix: np.ndarray, path: Path, seeds: list[int]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1.0 + 0.62 * len(names), 0.8 + 0.55 * len(names)))
    image = ax.imshow(matrix, cmap="RdBu_r", vmin=0.2, vmax=0.8)
    ax.set_xticks(range(len(names)), [f"{i + 1}" for i in range(len(names))])
    ax.set_yticks(range(len(names)), [f"{i + 1}. {n}" for i, n in enumerate(names)], fontsize=7)
    for i in range(len(names)):
        for j in range(len(names)):
            ax.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", fontsize=6)
    ax.set_title(f"cyclic world: P*(row beats column), mean of seeds {', '.join(map(str, seeds))}", fontsize=8)
    fig.colorbar(image, ax=ax, fraction=0.04)
    fig.tight_layout()
    fig.savefig(path, dpi=130, bbox_inches="tight")
    plt.close(fig)


if __name__ == "__main__":
    main()
