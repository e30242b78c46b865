"""Shared by ``benchmarks/online_*.py``: the demo's world contexts, online runs with learning-curve
evaluations at fixed query budgets, offline baselines at equal labels, and the style exploitability.

Every run starts from the demo's SFT reference (``prefkit.demo.prepare``: tiny Llama, hidden 64,
two layers) and uses the demo's entries (``prefkit.demo.ONLINE``/``OFFLINE``) with the same
annotator pool, so benchmark and leaderboard numbers describe the same methods.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import platform
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from prefkit.demo import (
    OFFLINE,
    ONLINE,
    DemoContext,
    DemoSettings,
    Entry,
    _base_config,
    _with_overrides,
    prepare,
)
from prefkit.engine import TrainData, train
from prefkit.engine.evaluation import evaluate_on_world
from prefkit.engine.methods import get_method
from prefkit.engine.online.methods import feedback_per_step, resolve_recipe
from prefkit.policy import Policy
from prefkit.preference import WorldJudge
from prefkit.sim import lexicon as lx

OUT = Path("runs/bench_online")


def machine() -> str:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__} "
            f"({torch.get_num_threads()} thread), load average {load:.1f} at start")


def context(world: str, seed: int, out: Path) -> DemoContext:
    """The demo's fast setting on ``world``: SFT reference, annotator pairs, reference samples, pool."""
    settings = DemoSettings.preset(world, True, seed)
    return prepare(settings, out, lambda msg: None, False)


def entry(method: str, label: str | None = None, **overrides: Any) -> Entry:
    """The demo's entry for ``method`` (the one named ``label`` when several share the method),
    with extra overrides merged in."""
    for e in (*ONLINE, *OFFLINE):
        if e.method == method and (label is None or e.label == label):
            merged = {k: dict(v) if isinstance(v, dict) else v for k, v in e.overrides.items()}
            for section, values in overrides.items():
                merged[section] = {**merged.get(section, {}), **values}
            return dataclasses.replace(e, overrides=merged)
    raise KeyError(method)


def style_exploitability(world: Any, prompts: Sequence[str], samples: Sequence[Sequence[str]]) -> float:
    """Exploitability of the policy's *style* mixture in the world's style game (bodies held equal).

    Per topic t, ``p_t`` is the frequency of each opener style (and of no style) over the samples
    of the prompts about t, and ``G_t = world.style_game`` the true preference between styles;
    the value is ``sum_t w_t (max_i (G_t p_t)_i - 1/2)`` with ``w_t`` the share of prompts. Zero for
    the style Nash mixture; a policy that commits to one style is beaten by the style that beats it.
    """
    by_topic: dict[int, list[str]] = {}
    for prompt, row in zip(prompts, samples):
        by_topic.setdefault(world.prompt_info(prompt)[0], []).extend(row)
    total, value = len(prompts), 0.0
    for topic, responses in by_topic.items():
        styles = world.styles(responses)
        p = np.bincount(styles, minlength=len(lx.STYLES) + 1) / len(styles)
        prompt = next(x for x in prompts if world.prompt_info(x)[0] == topic)
        game = world.style_game(prompt)
        share = sum(world.prompt_info(x)[0] == topic for x in prompts) / total
        value += share * (float((game @ p).max()) - 0.5)
    return value


def evaluate(ctx: DemoContext, policy: Policy, eval_cfg: Any) -> tuple[dict[str, float], list[list[str]]]:
    s = ctx.settings
    result, samples = evaluate_on_world(policy, ctx.reference, ctx.world, eval_cfg, seed=s.seed + 2,
                                        ref_samples=ctx.ref_samples, pool=ctx.pool)
    prompts = ctx.world.prompts("eval", eval_cfg.prompts)
    out = {"win_rate": result.win_rate, "win_rate_se": result.win_rate_se, "kl": result.kl,
           "utility": result.mean_utility}
    if result.exploitability is not None:
        out.update(exploitability=result.exploitability, exploitability_se=result.exploitability_se,
                   style_exploitability=style_exploitability(ctx.world, prompts, samples.texts))
    return out, samples.texts


def online_curve(ctx: DemoContext, e: Entry, budgets: Sequence[int], out: Path,
                 judge: Any | None = None) -> dict[str, Any]:
    """Train ``e`` until the largest budget; evaluate where each budget is reached.

    The budget counts judge queries plus reward evaluations (for a trained judge these are model
    calls; its annotator labels are the context's ``pairs``). Returns the points ``(step, queries,
    reward_evals, compute_s, gen_share, metrics...)`` and the final samples of the eval prompts.
    """
    from prefkit.demo import demo_preference_model, online_config

    settings = dataclasses.replace(ctx.settings, online_queries=max(budgets), online_max_steps=10**6)
    cfg, recipe = online_config(settings, e, out)
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, eval_every=1, log_every=1))
    spec = cfg.online.judge
    queries, evals = feedback_per_step(recipe, cfg.online, scalar_reward=spec == "bt")
    per_step = max(queries + evals, 1e-9)
    at = sorted({min(cfg.train.steps, max(1, round(b / per_step))) for b in budgets})
    if judge is None and spec in ("bt", "gpm"):
        judge = demo_preference_model(ctx, spec)
    world_judge = judge or WorldJudge(ctx.world, kind="truth" if spec == "world-truth" else "annotators",
                                      seed=ctx.settings.seed + 11)
    points: list[dict[str, Any]] = []
    final: dict[str, Any] = {}

    def on_eval(policy: Policy, reference: Policy | None, step: int) -> dict[str, Any]:
        if step not in at:
            return {}
        scores, texts = evaluate(ctx, policy, cfg.eval)
        points.append({"step": step, **scores})
        final["samples"] = texts
        return scores

    policy = Policy(copy.deepcopy(ctx.reference.model).train().requires_grad_(True), ctx.reference.tokenizer)
    began = time.perf_counter()
    result = train(cfg, data=TrainData(prompts=ctx.world.prompts("train")),
                          policy=policy, reference=ctx.reference, progress=False, evaluate=on_eval,
                          judge=world_judge)
    seconds = time.perf_counter() - began
    logged = {}
    for line in (out / "metrics.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        if "queries" in row:
            logged[row["step"]] = row
    for p in points:
        row = logged[p["step"]]
        p.update(queries=row["queries"], reward_evals=row["reward_evals"], compute_s=row["compute_s"],
                 gen_share=row["gen_share"], gen_tokens=row["gen_tokens"])
    return {"method": e.method, "label": e.label, "judge": spec, "steps": cfg.train.steps, "lr": cfg.train.lr,
            "beta": cfg.loss.beta, "points": points, "samples": final.get("samples"), "seconds": seconds,
            "metrics": {k: v for k, v in result.metrics.items() if not isinstance(v, dict)}}


def offline_point(ctx: DemoContext, e: Entry, labels: int, out: Path) -> dict[str, Any]:
    """An offline method of the demo trained on the first ``labels`` annotator pairs."""
    s = ctx.settings
    cfg = _with_overrides(_base_config(s, out, e.method, s.steps, s.lr), e.overrides)
    policy = Policy(copy.deepcopy(ctx.reference.model).train().requires_grad_(True), ctx.reference.tokenizer)
    began = time.perf_counter()
    train(cfg, data=TrainData(pairs=ctx.pairs[:labels]), policy=policy, reference=ctx.reference, progress=False)
    seconds = time.perf_counter() - began
    scores, texts = evaluate(ctx, policy, cfg.eval)
    return {"method": e.method, "label": e.label, "labels": labels, "seconds": seconds, **scores, "samples": texts,
            "lr": cfg.train.lr, "beta": cfg.loss.beta}


def mean_sd(values: Sequence[float]) -> str:
    values = np.asarray([v for v in values if v is not None], dtype=float)
    if values.size == 0:
        return "–"
    if values.size == 1:
        return f"{values[0]:.3f}"
    return f"{values.mean():.3f} ± {values.std(ddof=1):.3f}"


def recipe_of(method: str, online: Any) -> Any:
    return resolve_recipe(get_method(method), online)
