"""Shared by ``benchmarks/feedback_*.py``: the machine line, held-out world pairs labelled by the
truth, and an SFT reference policy on the world's base responses (cached per seed).

The reference is a tiny Llama (hidden 32, 2 layers) fitted by SFT on the world's base responses;
its word-level tokenizer also knows Chain of Hindsight's feedback phrases (``User:`` and the
phrase pairs), so CoH can start from it.
"""

from __future__ import annotations

import os
import platform
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from prefkit.config import EvalConfig, RunConfig, TinyConfig, TrainConfig
from prefkit.data.hindsight import PHRASES
from prefkit.data.records import PairRecord
from prefkit.engine import TrainData, train
from prefkit.policy import Policy
from prefkit.sim import make_world

TINY = TinyConfig(hidden_size=32, layers=2, heads=2)
EVAL = EvalConfig(prompts=64, samples=4, max_new_tokens=16)


def machine() -> str:
    import transformers

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
            f"transformers {transformers.__version__}, {torch.get_num_threads()} thread(s), load average {load:.1f}")


def truth_pairs(world: Any, n: int, seed: int) -> list[PairRecord]:
    """``n`` held-out pairs of base responses on eval prompts, labelled by the world's true
    preference (chosen = the truly preferred one; exact ties dropped)."""
    pairs = world.pairs(n, np.random.default_rng([seed, 101]), split="eval")
    p = world.true_preference([r.prompt for r in pairs], [r.chosen for r in pairs], [r.rejected for r in pairs])
    return [replace(r, label=1.0) if q > 0.5 else replace(r, chosen=r.rejected, rejected=r.chosen, label=1.0)
            for r, q in zip(pairs, p) if q != 0.5]


def base_config(method: str, out: Path, seed: int, *, steps: int, lr: float, batch: int = 32,
                max_length: int = 64, world: str | None = "transitive") -> RunConfig:
    return RunConfig(method=method, seed=seed, out=str(out), tiny=TINY,
                     train=TrainConfig(steps=steps, batch_size=batch, lr=lr, max_length=max_length, log_every=10,
                                       warmup_steps=min(10, steps // 10), threads=1),
                     eval=replace(EVAL, world=world))


def reference_policy(seed: int, out: Path, *, world_name: str = "transitive", steps: int = 300) -> tuple[Any, Policy]:
    """``(world, SFT reference)``: cached in ``out/sft-WORLD-SEED-STEPS`` (reused when that run
    finished earlier; the key holds everything that shapes the reference, so a smoke run with few
    steps is never reused by a full one)."""
    world = make_world(world_name, seed=seed)
    sft_dir = out / f"sft-{world_name}-{seed}-{steps}"
    if (sft_dir / "metrics.json").is_file():
        return world, Policy.load(sft_dir / "policy", device="cpu")
    rng = np.random.default_rng(seed)
    prompts = world.prompts("train")
    responses = world.base_responses(prompts, 4, rng)
    sequences = [(p, y) for p, row in zip(prompts, responses) for y in row]
    texts = [*world.vocabulary(), *prompts, *world.prompts("eval"), "User:", *[p for pair in PHRASES for p in pair],
             "Final answer"]
    policy = Policy.tiny([" ".join(texts)], TINY, seed=seed)
    cfg = base_config("sft", sft_dir, seed, steps=steps, lr=3e-3, world=None)
    cfg = replace(cfg, train=replace(cfg.train, schedule="cosine"))
    began = time.perf_counter()
    train(cfg, data=TrainData(sequences=sequences), policy=policy, progress=False)
    print(f"# SFT reference seed {seed}: {len(sequences)} base responses, {steps} steps, "
          f"{time.perf_counter() - began:.0f}s", flush=True)
    return world, policy


def fresh(out: Path) -> Path:
    import shutil

    if out.exists():
        shutil.rmtree(out)
    return out


def mean_sd(values: list[float]) -> str:
    a = np.asarray(values, dtype=float)
    return f"{a.mean():.3f} ± {a.std(ddof=1) if len(a) > 1 else 0.0:.3f}"
