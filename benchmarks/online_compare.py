"""Online methods against each other and against offline DPO/IPO, AlpacaFarm style, on every world.

Every method is a ``prefkit demo`` entry (same settings) and starts from the demo's SFT
reference. The judge is the world's annotator pool (``alpacafarm``/``clean``/``length_biased``),
or a BT/GPM preference model fitted on the demo's 3000 pairs from that pool (marked †). Win-rate
against the reference under the true preference P* is measured where each method has spent 500,
1000, 2000 and 3000 queries (learning-curve evaluations of one run), and after a fixed compute
budget (the last evaluation whose step-function seconds, generation + judge + update, fit in it).
Offline DPO/IPO (the demo's settings) train on the first 1000, 2000 and 3000 pairs of the same
pool (equal labels). Best-of-n spends its budget at inference (per evaluated response), so it is
listed apart. Seeds 1-3 (hyperparameters were chosen on seed 0).

Writes ``runs/bench_online/compare_<world>_<seed>.json`` (points and final samples, used by
``online_cyclic.py``), ``benchmarks/online_curves.png`` and prints markdown tables.

    PYTHONPATH=. python benchmarks/online_compare.py [--worlds transitive cyclic noisy] [--seeds 1 2 3]
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from benchmarks.online_common import (
    OUT,
    context,
    entry,
    machine,
    mean_sd,
    offline_point,
    online_curve,
)
from prefkit.demo import ONLINE, demo_preference_model
from prefkit.engine.online.judge import OnlineJudge
from prefkit.engine.online.rollout import Sampler
from prefkit.engine.online.train import best_of_n_kl, best_of_n_texts
from prefkit.preference import WorldJudge
from prefkit.sim.evaluation import evaluate as sim_evaluate

BUDGETS = (500, 1000, 2000, 3000)
COMPUTE = (3.0, 8.0)
OFFLINE_LABELS = (1000, 2000, 3000)
BEST_OF = (2, 4, 8)


def run_context(world: str, seed: int, methods: list[str]) -> dict:
    out = OUT / f"{world}_{seed}_{time.strftime('%H%M%S')}"
    ctx = context(world, seed, out)
    result: dict = {"world": world, "seed": seed, "online": [], "offline": [], "best_of_n": []}
    for e in ONLINE:
        if e.method == "best_of_n" or (methods and e.method not in methods):
            continue
        curve = online_curve(ctx, e, BUDGETS, out / e.label.replace(" ", "_").replace("/", "_"))
        result["online"].append(curve)
        last = curve["points"][-1]
        print(f"  {world} seed {seed} {e.method:16s} win {last['win_rate']:.3f} at {last['queries']:.0f} queries, "
              f"{curve['seconds']:.0f}s", flush=True)
    for method in ("dpo", "ipo"):
        for labels in OFFLINE_LABELS:
            result["offline"].append(offline_point(ctx, entry(method), labels, out / f"{method}_{labels}"))
    prompts = ctx.world.prompts("eval", ctx.settings.eval.prompts)
    for n, reward in [(n, r) for n in BEST_OF for r in ("annotator win-rate", "BT reward")]:
        if reward == "BT reward":
            judge = OnlineJudge(demo_preference_model(ctx, "bt"))
        else:
            judge = OnlineJudge(WorldJudge(ctx.world, seed=seed + 11), reward="win_rate")
        picks = best_of_n_texts(Sampler(ctx.reference, max_new_tokens=ctx.settings.eval.max_new_tokens), judge,
                                prompts, ctx.settings.eval.samples, n, seed=seed + 2)
        ev = sim_evaluate(ctx.world, prompts, picks, ctx.ref_samples.texts, pool=ctx.pool)
        responses = len(prompts) * ctx.settings.eval.samples
        result["best_of_n"].append({"n": n, "reward": reward, "win_rate": ev.win_rate, "win_rate_se": ev.win_rate_se,
                                    "kl_bound": best_of_n_kl(n), "exploitability": ev.exploitability,
                                    "queries_per_response": judge.queries / responses,
                                    "reward_evals_per_response": judge.reward_evals / responses,
                                    "samples": picks})
    result["reference_samples"] = ctx.ref_samples.texts
    path = OUT / f"compare_{world}_{seed}.json"
    path.write_text(json.dumps(result), encoding="utf-8")
    return result


def at_budget(points: list[dict], key: str, limit: float) -> dict | None:
    """The last evaluation whose ``key`` (queries or compute seconds) is within ``limit``."""
    fit = [p for p in points if p[key] + p.get("reward_evals", 0) * (key == "queries") <= limit * 1.05]
    return fit[-1] if fit else None


def tables(results: list[dict]) -> str:
    lines = []
    for world in dict.fromkeys(r["world"] for r in results):
        runs = [r for r in results if r["world"] == world]
        seeds = ", ".join(str(r["seed"]) for r in runs)
        lines += [f"#### World `{world}` (seeds {seeds}; mean ± sd over seeds of the win-rate against the SFT "
                  "reference under P*)", ""]
        head = "| method | " + " | ".join(f"{b} queries" for b in BUDGETS) + f" | KL at {BUDGETS[-1]} | " + " | ".join(
            f"≤ {c:g} s compute" for c in COMPUTE) + " | s per step | generating |"
        lines += [head, "|" + "---|" * (head.count("|") - 1)]
        for label in dict.fromkeys(c["label"] for r in runs for c in r["online"]):
            curves = [c for r in runs for c in r["online"] if c["label"] == label]
            cells = []
            for b in BUDGETS:
                cells.append(mean_sd([(at_budget(c["points"], "queries", b) or {}).get("win_rate") for c in curves]))
            cells.append(mean_sd([c["points"][-1]["kl"] for c in curves]))
            for limit in COMPUTE:
                cells.append(mean_sd([(at_budget(c["points"], "compute_s", limit) or {}).get("win_rate") for c in curves]))
            per_step = np.mean([c["points"][-1]["compute_s"] / c["points"][-1]["step"] for c in curves])
            share = np.mean([c["points"][-1]["gen_share"] for c in curves])
            judged = curves[0].get("judge", "world")
            name = label if judged in ("world", "world-truth") else f"{label} †"
            lines.append(f"| {name} | " + " | ".join(cells) + f" | {per_step:.2f} | {share:.0%} |")
        for method in ("dpo", "ipo"):
            points = [p for r in runs for p in r["offline"] if p["method"] == method]
            cells = [mean_sd([p["win_rate"] for p in points if p["labels"] == b]) if b in OFFLINE_LABELS else "–"
                     for b in BUDGETS]
            kl = mean_sd([p["kl"] for p in points if p["labels"] == OFFLINE_LABELS[-1]])
            lines.append(f"| offline {method.upper()} (labels = queries) | " + " | ".join(cells) + f" | {kl} | – | – | – | – |")
        lines += ["", "† judged by a preference model fitted on the 3000 annotator pairs (BT reward, or GPM for "
                  "GPO): its budget columns count model calls and reward evaluations, its annotator cost is the "
                  "3000 labels.", "",
                  "| best-of-n of the reference's samples | win-rate | KL bound | queries per response "
                  "| reward evaluations per response |", "|---|---|---|---|---|"]
        for n, reward in [(n, r) for n in BEST_OF for r in ("annotator win-rate", "BT reward")]:
            points = [p for r in runs for p in r["best_of_n"] if p["n"] == n and p.get("reward") == reward]
            lines.append(f"| best-of-{n} ({reward}) | {mean_sd([p['win_rate'] for p in points])} | "
                         f"{best_of_n_kl(n):.3f} | {np.mean([p['queries_per_response'] for p in points]):.1f} | "
                         f"{np.mean([p['reward_evals_per_response'] for p in points]):.1f} |")
        if any("exploitability" in p for r in runs for c in r["online"] for p in c["points"]):
            lines += ["", f"| method (at {BUDGETS[-1]} queries) | exploitability (pool) | style exploitability |",
                      "|---|---|---|"]
            for label in dict.fromkeys(c["label"] for r in runs for c in r["online"]):
                curves = [c for r in runs for c in r["online"] if c["label"] == label]
                lines.append(f"| {label} | {mean_sd([c['points'][-1]['exploitability'] for c in curves])} | "
                             f"{mean_sd([c['points'][-1]['style_exploitability'] for c in curves])} |")
        lines.append("")
    return "\n".join(lines)


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    worlds = list(dict.fromkeys(r["world"] for r in results))
    fig, axes = plt.subplots(1, len(worlds), figsize=(5.2 * len(worlds), 4.2), squeeze=False)
    for ax, world in zip(axes[0], worlds):
        runs = [r for r in results if r["world"] == world]
        labels = list(dict.fromkeys(c["label"] for r in runs for c in r["online"]))
        for n, label in enumerate(labels):
            curves = [c for r in runs for c in r["online"] if c["label"] == label]
            xs = BUDGETS
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # budgets a batched method skips
                ys = [np.nanmean([(at_budget(c["points"], "queries", b) or {}).get("win_rate", np.nan)
                                  for c in curves]) for b in xs]
            ax.plot(xs, ys, marker="osD^v<>"[n % 7], ms=3, lw=1, ls="-" if n < 10 else "--",
                    color=plt.cm.tab20(n / max(len(labels) - 1, 1)), label=label)
        offline = [p for r in runs for p in r["offline"] if p["method"] == "dpo"]
        ax.plot(OFFLINE_LABELS, [np.mean([p["win_rate"] for p in offline if p["labels"] == b]) for b in OFFLINE_LABELS],
                "k--", marker="s", ms=3, label="offline DPO (labels)")
        ax.axhline(0.5, color="grey", lw=0.8)
        ax.set_title(f"world '{world}'")
        ax.set_xlabel("preference queries")
        ax.set_ylabel("win-rate vs SFT under P*")
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--worlds", nargs="+", default=["transitive", "cyclic", "noisy"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--methods", nargs="*", default=[])
    parser.add_argument("--tables-only", action="store_true", help="reprint from the saved JSON files")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"machine: {machine()}")
    OUT.mkdir(parents=True, exist_ok=True)
    results = []
    for world in args.worlds:
        for seed in args.seeds:
            path = OUT / f"compare_{world}_{seed}.json"
            if args.tables_only:
                results.append(json.loads(path.read_text(encoding="utf-8")))
            else:
                results.append(run_context(world, seed, args.methods))
    print(tables(results))
    plot(results, Path("benchmarks/online_curves.png"))


if __name__ == "__main__":
    main()
