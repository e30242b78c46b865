"""The seed papers' comparisons against the RL baselines, reproduced on the simulated transitive world.

Every method is its ``prefkit demo`` entry (``prefkit.demo.ONLINE``/``OFFLINE``: the same settings
as the leaderboard, ``--fast`` preset) and starts from the demo's SFT reference (tiny Llama,
hidden 64, two layers). Feedback: the world's AlpacaFarm-style annotator pool (25% of labels
flipped, a length bias); the reward-driven methods use the demo's Bradley-Terry reward model
fitted on the 3000 annotator pairs (the *proxy* reward), every method the same budget (3000
annotator labels; 3000 judge calls or reward evaluations for the online ones). Evaluation: 120
held-out prompts, 4 samples each, at temperature 0.7, against the reference's samples.

1. AlpacaFarm (Dubois et al. 2023, arXiv 2305.14387, Table 2): PPO and DPO above best-of-n,
   above expert iteration, above SFT, by win-rate under P* (the "human" ranking); and the
   Spearman correlation between that ranking and the one measured by the noisy annotator pool
   (the "simulator": the expected label of a randomly drawn annotator, flips included), over
   every method of this script (AlpacaFarm reports 0.98 sim vs human).
2. P3O vs PPO (Wu et al. 2023, arXiv 2310.00212): the KL-reward frontier (win-rate under P* and
   the proxy reward against KL at three KL strengths each; ``benchmarks/rl_frontier.png``), and
   invariance to equivalent rewards: the same runs with the reward shifted per prompt
   (``r + delta(x)``, delta ~ N(0, 10^2)) and shifted and scaled (``10 r + delta(x)``); the
   distance of the final parameters from the unshifted run's, relative to how far that run moved.
3. GRAO vs GRPO vs PPO vs DPO (Wang et al. 2025, arXiv 2508.07750: GRAO > GRPO > PPO > DPO).
4. SuperHF vs PPO (Mukobi et al. 2023, arXiv 2310.16763): proxy reward (the BT model's score of
   the samples, minus the reference's) and win-rate under P*; reward hacking is a high proxy
   gain without the true gain.

Seeds 1-3 (the demo's hyperparameters were chosen on seed 0). Writes
``runs/bench_rl/rl_<seed>.json`` per seed, prints the tables and writes the plot.

    PYTHONPATH=. python benchmarks/rl_baselines.py [--seeds 1 2 3] [--report]
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import hashlib
import itertools
import json
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from scipy.stats import spearmanr

from benchmarks.online_common import context, entry, machine, mean_sd, offline_point
from prefkit.demo import DemoContext, Entry, demo_preference_model, online_config
from prefkit.engine import TrainData, train
from prefkit.engine.evaluation import evaluate_on_world
from prefkit.engine.online.judge import OnlineJudge
from prefkit.engine.online.rollout import Sampler
from prefkit.engine.online.train import best_of_n_kl, best_of_n_texts
from prefkit.losses import PPO_PRESETS
from prefkit.policy import Policy
from prefkit.preference import WorldJudge
from prefkit.sim.evaluation import evaluate as sim_evaluate

OUT = Path("runs/bench_rl")
PLOT = Path("benchmarks/rl_frontier.png")
FRONTIER = {"ppo": (0.02, 0.05, 0.2), "p3o": (0.02, 0.05, 0.2)}
"""Extra KL strengths (``loss.beta``) beside each method's demo value (PPO 0.0067, P3O 0.1)."""
SHIFT_SD = 10.0
BEST_OF = (4, 16)


class TransformedReward:
    """The proxy reward model with ``scale * r(x, y) + delta(x)``, ``delta(x) ~ N(0, SHIFT_SD^2)``
    fixed per prompt (a hash of the prompt seeds it): an *equivalent* reward for a method that
    only uses reward differences within a prompt (P3O), up to the scale."""

    kind = "bt"

    def __init__(self, model: Any, scale: float) -> None:
        self.model, self.scale = model, scale
        self.name = f"bt x{scale:g} + delta(x)"

    @staticmethod
    def delta(prompt: str) -> float:
        seed = int.from_bytes(hashlib.sha256(str(prompt).encode()).digest()[:8], "little")
        return float(np.random.default_rng(seed).normal(0.0, SHIFT_SD))

    def embed(self, prompts, responses) -> torch.Tensor:
        base = torch.as_tensor(self.model.embed(prompts, responses)).detach().double().reshape(len(responses), 1)
        shift = torch.tensor([self.delta(p) for p in prompts], dtype=torch.float64)[:, None]
        return self.scale * base + shift

    def prob_from_embeddings(self, e_a, e_b) -> torch.Tensor:
        return torch.sigmoid((e_a[:, 0] - e_b[:, 0]) / self.scale).float()

    def prob(self, prompts, a, b) -> torch.Tensor:
        return self.model.prob(prompts, a, b)


# ----------------------------------------------------------------------------- measuring a policy

def annotator_win_rate(ctx: DemoContext, prompts: list[str], samples: list[list[str]]) -> float:
    """The simulator's win-rate against the reference: the expected label of the noisy pool
    (an annotator drawn per pair, its flip probability included) over all sample pairs."""
    flat_p, flat_a, flat_b = [], [], []
    for p, mine, ref in zip(prompts, samples, ctx.ref_samples.texts):
        for y in mine:
            for r in ref:
                flat_p.append(p), flat_a.append(y), flat_b.append(r)
    notes = ctx.world.annotate_detailed(flat_p, flat_a, flat_b, np.random.default_rng(ctx.settings.seed + 99))
    flip = np.array([ctx.world.pool[k].flip for k in notes.annotator])
    return float(np.mean(notes.prob * (1 - flip) + (1 - notes.prob) * flip))


def proxy_scores(ctx: DemoContext, prompts: list[str], samples: list[list[str]]) -> tuple[float, float]:
    """The proxy (BT) reward's view: the samples' mean reward minus the reference samples', and
    the win-rate against the reference it predicts (mean of sigmoid(r(y) - r(y_ref)) over the
    same pairs as the win-rate under P*): the proxy's number in the units of the true one."""
    bt = demo_preference_model(ctx, "bt")

    def rewards(texts: list[list[str]]) -> torch.Tensor:
        flat_p = [p for p, row in zip(prompts, texts) for _ in row]
        flat_y = [y for row in texts for y in row]
        return torch.as_tensor(bt.embed(flat_p, flat_y)).double().reshape(len(texts), -1)

    mine, ref = rewards(samples), rewards(ctx.ref_samples.texts)
    win = torch.sigmoid(mine[:, :, None] - ref[:, None, :]).mean()
    return float(mine.mean() - ref.mean()), float(win)


def measure(ctx: DemoContext, prompts: list[str], texts: list[list[str]], evaluation: Any, kl: float,
            **extra: Any) -> dict[str, Any]:
    return {"win_rate": evaluation.win_rate, "win_rate_se": evaluation.win_rate_se, "kl": kl,
            "annotator_win_rate": annotator_win_rate(ctx, prompts, texts),
            **dict(zip(("proxy_reward", "proxy_win_rate"), proxy_scores(ctx, prompts, texts))),
            "utility": evaluation.mean_utility, **extra}


def flat_params(policy: Policy) -> torch.Tensor:
    return torch.cat([p.detach().double().flatten() for p in policy.model.parameters()])


def run_trained(ctx: DemoContext, label: str, e: Entry, out: Path, judge: Any | None = None,
                budget: int | None = None) -> tuple[dict, Policy | None]:
    """Train the entry from the reference (offline on the pairs, online against its judge, with
    ``budget`` judge calls instead of the demo's 3000)."""
    s = ctx.settings
    prompts = ctx.world.prompts("eval", s.eval.prompts)
    if e.data != "online":
        point = offline_point(ctx, e, len(ctx.pairs), out)
        evaluation = SimpleNamespace(win_rate=point["win_rate"], win_rate_se=point["win_rate_se"],
                                     mean_utility=point["utility"])
        row = measure(ctx, prompts, point["samples"], evaluation, point["kl"], label=label, method=e.method,
                      beta=point["beta"], lr=point["lr"], seconds=point["seconds"], steps=s.steps, samples=0,
                      queries=len(ctx.pairs), reward_evals=0)
        return row, None
    policy = Policy(copy.deepcopy(ctx.reference.model).train().requires_grad_(True), ctx.reference.tokenizer)
    cfg, _ = online_config(dataclasses.replace(s, online_queries=budget) if budget else s, e, out)
    if judge is None and cfg.online.judge in ("bt", "gpm"):
        judge = demo_preference_model(ctx, cfg.online.judge)
    elif judge is None:
        judge = WorldJudge(ctx.world, seed=s.seed + 11)
    began = time.perf_counter()
    result = train(cfg, data=TrainData(prompts=ctx.world.prompts("train")), policy=policy,
                   reference=ctx.reference, progress=False, judge=judge)
    seconds = time.perf_counter() - began
    evaluation, samples = evaluate_on_world(policy, ctx.reference, ctx.world, cfg.eval, seed=s.seed + 2,
                                            ref_samples=ctx.ref_samples, pool=ctx.pool)
    m = result.metrics
    beta = cfg.loss.beta
    if beta is None and cfg.online.preset is not None:
        beta = PPO_PRESETS[cfg.online.preset]["kl_coef"]
    row = measure(ctx, prompts, samples.texts, evaluation, evaluation.kl, label=label, method=e.method,
                  beta=beta, lr=cfg.train.lr, seconds=seconds, steps=m["steps"], samples=m["samples"],
                  queries=m["queries"], reward_evals=m["reward_evals"])
    return row, policy


def run_best_of_n(ctx: DemoContext, n: int) -> dict[str, Any]:
    s = ctx.settings
    judge = OnlineJudge(demo_preference_model(ctx, "bt"))
    prompts = ctx.world.prompts("eval", s.eval.prompts)
    began = time.perf_counter()
    picks = best_of_n_texts(Sampler(ctx.reference, max_new_tokens=s.eval.max_new_tokens), judge, prompts,
                            s.eval.samples, n, seed=s.seed + 2, temperature=s.eval.temperature)
    evaluation = sim_evaluate(ctx.world, prompts, picks, ctx.ref_samples.texts, pool=ctx.pool)
    return measure(ctx, prompts, picks, evaluation, best_of_n_kl(n), label=f"best-of-{n} (BT reward)",
                   method="best_of_n", seconds=time.perf_counter() - began, reward_evals=judge.reward_evals,
                   kl_is_bound=True)


def with_beta(e: Entry, beta: float) -> Entry:
    return dataclasses.replace(e, overrides={**e.overrides, "loss": {**e.overrides.get("loss", {}), "beta": beta}})


def run_seed(seed: int) -> dict[str, Any]:
    out = OUT / f"seed{seed}_{time.strftime('%H%M%S')}"
    ctx = context("transitive", seed, out)
    prompts = ctx.world.prompts("eval", ctx.settings.eval.prompts)
    ref = sim_evaluate(ctx.world, prompts, ctx.ref_samples.texts, ctx.ref_samples.texts)
    rows = [measure(ctx, prompts, ctx.ref_samples.texts, ref, 0.0, label="SFT (reference)", method="sft")]
    result: dict[str, Any] = {"seed": seed, "rows": rows, "frontier": [], "invariance": []}
    main = [("DPO", entry("dpo")), ("expert iteration", entry("expert_iteration")), ("PPO", entry("ppo")),
            ("GRPO", entry("grpo")), ("GRAO", entry("grao")), ("SuperHF", entry("superhf")),
            ("P3O", entry("p3o", "P3O (BT reward)")), ("RLOO", entry("rloo")), ("Dr. GRPO", entry("dr_grpo")),
            ("REINFORCE++", entry("reinforce_pp")), ("pairwise PPO (annotators)", entry("pairwise_ppo"))]
    policies: dict[str, Policy] = {}
    for label, e in main:
        row, policies[label] = run_trained(ctx, label, e, out / label.replace(" ", "_"))
        rows.append(row)
        print(f"  seed {seed} {label:18s} P* {row['win_rate']:.3f} annot {row['annotator_win_rate']:.3f} "
              f"KL {row['kl']:.2f} proxy {row['proxy_reward']:+.3f} {row['seconds']:.0f}s", flush=True)
    for n in BEST_OF:
        rows.append(run_best_of_n(ctx, n))
    result["long"] = []
    for label in ("PPO", "SuperHF"):
        row, _ = run_trained(ctx, f"{label}, 2x budget", entry(label.lower()), out / f"{label}_long",
                             budget=2 * len(ctx.pairs))
        result["long"].append(row)
        print(f"  seed {seed} {label} 2x budget: P* {row['win_rate']:.3f} proxy win {row['proxy_win_rate']:.3f}",
              flush=True)
    for method, label in (("ppo", "PPO"), ("p3o", "P3O")):
        base = entry(method, "P3O (BT reward)" if method == "p3o" else None)
        result["frontier"].append({**next(r for r in rows if r["label"] == label), "method": method})
        for beta in FRONTIER[method]:
            row, _ = run_trained(ctx, f"{label} beta {beta:g}", with_beta(base, beta), out / f"{method}_{beta:g}")
            result["frontier"].append({**row, "method": method})
            print(f"  seed {seed} {label} beta {beta:g}: P* {row['win_rate']:.3f} KL {row['kl']:.2f}", flush=True)
        start = flat_params(ctx.reference)
        plain = flat_params(policies[label])
        plain_row = next(r for r in rows if r["label"] == label)
        for scale, scaled_beta in ((1.0, False), (10.0, False), (10.0, True)):
            judge = TransformedReward(demo_preference_model(ctx, "bt"), scale)
            run = with_beta(base, 10 * plain_row["beta"]) if scaled_beta else base
            row, policy = run_trained(ctx, f"{label}, reward {judge.name}", run,
                                      out / f"{method}_x{scale:g}{'_beta' if scaled_beta else ''}", judge=judge)
            moved = float((plain - start).norm())
            row.update(scale=scale, scaled_beta=scaled_beta, plain_win_rate=plain_row["win_rate"],
                       param_distance=float((flat_params(policy) - plain).norm()) / moved)
            result["invariance"].append({**row, "method": method})
            print(f"  seed {seed} {label} x{scale:g}+delta{' beta x10' if scaled_beta else ''}: P* "
                  f"{row['win_rate']:.3f} relative distance {row['param_distance']:.3g}", flush=True)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"rl_{seed}.json").write_text(json.dumps(result, indent=1), encoding="utf-8")
    return result


# ----------------------------------------------------------------------------- report

def by_label(results: list[dict], label: str, key: str = "rows") -> list[dict]:
    return [r for res in results for r in res[key] if r["label"] == label]


def table(results: list[dict], labels: list[str], key: str = "rows") -> list[str]:
    lines = ["| method | win-rate under P* | win-rate by the annotator pool | proxy (BT) win-rate | KL | "
             "proxy reward gain | seconds | samples |", "|---|---|---|---|---|---|---|---|"]
    for label in labels:
        rows = by_label(results, label, key)
        kl = mean_sd([r["kl"] for r in rows]) + (" (bound)" if rows and rows[0].get("kl_is_bound") else "")
        lines.append(f"| {label} | {mean_sd([r['win_rate'] for r in rows])} | "
                     f"{mean_sd([r['annotator_win_rate'] for r in rows])} | "
                     f"{mean_sd([r['proxy_win_rate'] for r in rows])} | {kl} | "
                     f"{mean_sd([r['proxy_reward'] for r in rows])} | {np.mean([r.get('seconds', 0) for r in rows]):.0f} | "
                     f"{int(np.mean([r.get('samples', 0) for r in rows]))} |")
    return lines


def order_holds(results: list[dict], order: list[str]) -> list[str]:
    """Per seed, whether the win-rates under P* follow ``order`` (strictly decreasing)."""
    out = []
    for res in results:
        w = [next(r["win_rate"] for r in res["rows"] if r["label"] == label) for label in order]
        out.append("yes" if all(a > b for a, b in itertools.pairwise(w)) else "no")
    return out


def means(results: list[dict], labels: list[str]) -> str:
    return ", ".join(f"{label} {np.mean([r['win_rate'] for r in by_label(results, label)]):.3f}" for label in labels)


def report(results: list[dict]) -> str:
    seeds = [r["seed"] for r in results]
    every = list(dict.fromkeys(r["label"] for res in results for r in res["rows"]))
    lines = [f"Seeds {seeds}; mean ± sd over seeds.", "", "**All methods**", "", *table(results, every), ""]

    lines += ["**AlpacaFarm's ranking** (PPO, DPO > best-of-n > expert iteration > SFT)", ""]
    for bon in ("best-of-4 (BT reward)", "best-of-16 (BT reward)"):
        order = ["PPO", "DPO", bon, "expert iteration", "SFT (reference)"]
        lines.append(f"- means: {means(results, order)}; PPO > {bon} > EI > SFT per seed "
                     f"{', '.join(order_holds(results, ['PPO', bon, 'expert iteration', 'SFT (reference)']))}; "
                     f"DPO > {bon} > EI > SFT per seed "
                     f"{', '.join(order_holds(results, ['DPO', bon, 'expert iteration', 'SFT (reference)']))}")
    rho = []
    for res in results:
        rho.append(float(spearmanr([r["win_rate"] for r in res["rows"]],
                                   [r["annotator_win_rate"] for r in res["rows"]]).statistic))
    lines += [f"- Spearman between the ranking under P* and under the annotator pool ({len(every)} methods): "
              f"{mean_sd(rho)} (per seed {', '.join(f'{x:.3f}' for x in rho)})", ""]

    order = ["GRAO", "GRPO", "PPO", "DPO"]
    lines += [f"**GRAO vs GRPO vs PPO vs DPO** (GRAO's order: GRAO > GRPO > PPO > DPO): means "
              f"{means(results, order)}; the order holds per seed {', '.join(order_holds(results, order))}", ""]

    lines += ["**SuperHF vs PPO** (hacking = the proxy's predicted win-rate minus the win-rate under P*)", "",
              "| method | budget | proxy win-rate | win-rate under P* | hacking gap | proxy reward gain | KL |",
              "|---|---|---|---|---|---|---|"]
    for label, key, budget in (("PPO", "rows", "3000"), ("SuperHF", "rows", "3000"), ("PPO, 2x budget", "long", "6000"),
                               ("SuperHF, 2x budget", "long", "6000"), ("SFT (reference)", "rows", "–")):
        rows = by_label(results, label, key)
        gap = [r["proxy_win_rate"] - r["win_rate"] for r in rows]
        lines.append(f"| {label.split(',')[0]} | {budget} | {mean_sd([r['proxy_win_rate'] for r in rows])} | "
                     f"{mean_sd([r['win_rate'] for r in rows])} | {mean_sd(gap)} | "
                     f"{mean_sd([r['proxy_reward'] for r in rows])} | {mean_sd([r['kl'] for r in rows])} |")
    lines.append("")

    lines += ["**P3O vs PPO: KL-reward frontier** (`benchmarks/rl_frontier.png`)", "",
              "| method | loss.beta | KL | win-rate under P* | proxy reward gain |", "|---|---|---|---|---|"]
    for method in ("ppo", "p3o"):
        betas = sorted({r["beta"] for res in results for r in res["frontier"] if r["method"] == method})
        for beta in betas:
            rows = [r for res in results for r in res["frontier"] if r["method"] == method and r["beta"] == beta]
            lines.append(f"| {method.upper()} | {beta:g} | {mean_sd([r['kl'] for r in rows])} | "
                         f"{mean_sd([r['win_rate'] for r in rows])} | {mean_sd([r['proxy_reward'] for r in rows])} |")
    lines += ["", "**Invariance to an equivalent reward** (the same run with the reward transformed; distance "
              "= ‖θ' − θ‖ / ‖θ − θ₀‖ of the final parameters)", "",
              "| method | reward | win-rate under P* (plain → transformed) | relative parameter distance |",
              "|---|---|---|---|"]
    for method in ("ppo", "p3o"):
        for scale, scaled_beta, name in ((1.0, False, "r + δ(x)"), (10.0, False, "10 r + δ(x)"),
                                         (10.0, True, "10 r + δ(x), loss.beta × 10")):
            rows = [r for res in results for r in res["invariance"] if r["method"] == method
                    and r["scale"] == scale and r.get("scaled_beta", False) == scaled_beta]
            lines.append(f"| {method.upper()} | {name} | {mean_sd([r['plain_win_rate'] for r in rows])} → "
                         f"{mean_sd([r['win_rate'] for r in rows])} | {mean_sd([r['param_distance'] for r in rows])} |")
    return "\n".join(lines)


def plot(results: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for method, color in (("ppo", "tab:blue"), ("p3o", "tab:orange")):
        betas = sorted({r["beta"] for res in results for r in res["frontier"] if r["method"] == method})
        for ax, key, name in ((axes[0], "win_rate", "win-rate vs SFT under P*"),
                              (axes[1], "proxy_reward", "proxy (BT) reward gain")):
            xs, ys = [], []
            for beta in betas:
                rows = [r for res in results for r in res["frontier"] if r["method"] == method and r["beta"] == beta]
                ax.scatter([r["kl"] for r in rows], [r[key] for r in rows], color=color, alpha=0.35, s=12)
                xs.append(np.mean([r["kl"] for r in rows]))
                ys.append(np.mean([r[key] for r in rows]))
                ax.annotate(f"{beta:g}", (xs[-1], ys[-1]), fontsize=7, xytext=(3, 3), textcoords="offset points")
            order = np.argsort(xs)
            ax.plot(np.array(xs)[order], np.array(ys)[order], "-o", color=color, label=method.upper())
            ax.set_xlabel("KL(policy ‖ SFT) [nats]")
            ax.set_ylabel(name)
            ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle("P3O vs PPO on the transitive world (BT reward; points: seeds, lines: means; labels: loss.beta)",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(PLOT, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--report", action="store_true", help="only rebuild the tables and the plot from the JSON")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"machine: {machine()}", flush=True)
    results = []
    for seed in args.seeds:
        path = OUT / f"rl_{seed}.json"
        if args.report:
            results.append(json.loads(path.read_text(encoding="utf-8")))
        else:
            began = time.perf_counter()
            results.append(run_seed(seed))
            print(f"seed {seed}: {time.perf_counter() - began:.0f}s", flush=True)
    print(report(results))
    plot(results)


if __name__ == "__main__":
    main()
