"""DPO throughput on CPU: prefkit against TRL's DPOTrainer at equal settings.

Both train the same tiny Llama (hidden 128, 2 layers, 4 heads, word-level vocabulary of about
1024, untied head) on the same 512 synthetic pairs: batch 8 pairs, max length 128, 256 steps,
fp32, beta 0.1, lr 5e-5 (constant), AdamW, gradient clipping 1.0, data in the same fixed order.
TRL's DPOConfig defaults to bf16 and activation checkpointing; both are pinned off, and TRL gets
an explicit reference model. Each configuration runs in its own process (clean peak memory):

- ``trl``: TRL computing reference log-probs inline (its default);
- ``trl-precompute``: TRL with ``precompute_ref_log_probs=True``;
- ``prefkit``: ``prefkit train --method dpo`` (reference log-probs computed once before the loop,
  with an empty cache, and their time counted);
- ``prefkit-packed``: the same with ``train.packing=true`` (padding-free rows).

tokens/s = non-padding tokens through the policy forward (chosen and rejected rows both) divided
by the training wall time (TRL: ``trainer.train()``; prefkit: the loop plus the reference pass).
TRL is a test-only peer (the ``dev`` extra pins ``trl==1.16.0``). Data and settings come from
``benchmarks/dpo_trl_common.py``, shared with ``benchmarks/gpu/dpo_vs_trl.py``.

    python benchmarks/dpo_vs_trl_cpu.py [--steps 256] [--repeats 1] [--threads N]
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

from benchmarks.dpo_trl_common import (
    in_order_trainer,
    make_data,
    peak_rss_mib,
    prefkit_overrides,
    read_rows,
    trl_config_kwargs,
    trl_rows,
)

ROOT = Path(__file__).resolve().parents[1]


def make_model(directory: Path, data: Path, seed: int) -> Path:
    from prefkit.config import TinyConfig
    from prefkit.data import read_pairs
    from prefkit.policy import build_tiny_checkpoint

    records, _ = read_pairs(data)
    texts = [t for r in records for t in (r.prompt, r.chosen, r.rejected)]
    cfg = TinyConfig(hidden_size=128, layers=2, heads=4, max_vocab=1024, tie_word_embeddings=False)
    return build_tiny_checkpoint(directory / "model", texts, cfg, seed=seed)


def run_trl(args: argparse.Namespace, precompute: bool) -> dict:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    tokenizer = AutoTokenizer.from_pretrained(args.model)
    # The rows as they are: the tiny tokenizer adds its bos itself, so TRL and prefkit build the same
    # token sequences, [bos] + prompt + response + [eos] (prefkit.policy.chat follows TRL's rules).
    dataset = Dataset.from_list(trl_rows(read_rows(args.data)))
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32)
    ref_model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32)
    config = DPOConfig(**trl_config_kwargs(
        Path(args.workdir) / ("trl-pre" if precompute else "trl"), steps=args.steps, batch_size=8,
        max_length=128, lr=5e-5, beta=0.1, bf16=False, precompute=precompute, use_cpu=True,
    ))
    trainer = in_order_trainer(DPOTrainer)(model=model, ref_model=ref_model, args=config, train_dataset=dataset,
                                           processing_class=tokenizer)
    start = time.perf_counter()
    trainer.train()
    wall = time.perf_counter() - start
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return {"tokens": int(trainer._total_train_tokens), "wall_s": wall, "losses": losses}


def run_prefkit(args: argparse.Namespace, packing: bool = False) -> dict:
    os.environ["PREFKIT_CACHE"] = str(Path(args.workdir) / "prefkit-cache")
    from prefkit.config import RunConfig, load
    from prefkit.engine import train

    cfg = load(RunConfig, None, [*prefkit_overrides(
        args.model, args.data, Path(args.workdir) / "prefkit", steps=args.steps, batch_size=8, max_length=128,
        lr=5e-5, beta=0.1, precision="fp32",
    ), f"train.packing={str(packing).lower()}"])
    result = train(cfg, progress=False)
    m = result.metrics
    losses = [h["loss"] for h in result.history]
    return {"tokens": m["tokens"], "wall_s": m["wall_s"] + m["ref_logps_s"], "loop_wall_s": m["wall_s"],
            "ref_logps_s": m["ref_logps_s"], "losses": losses}


def worker(args: argparse.Namespace) -> None:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.worker in ("prefkit", "prefkit-packed"):
        out = run_prefkit(args, packing=args.worker == "prefkit-packed")
    else:
        out = run_trl(args, precompute=args.worker == "trl-precompute")
    out["peak_rss_mib"] = peak_rss_mib()
    out["tokens_per_s"] = out["tokens"] / out["wall_s"]
    Path(args.result).write_text(json.dumps(out))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=256)
    parser.add_argument("--pairs", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=1, help="alternate the runs this many times")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--worker", choices=["trl", "trl-precompute", "prefkit", "prefkit-packed"],
                        help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return

    import torch
    import transformers
    import trl

    import prefkit

    results: dict[str, list[dict]] = {"trl": [], "trl-precompute": [], "prefkit": [], "prefkit-packed": []}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = make_data(tmp, args.pairs, seed=0)
        model = make_model(tmp, data, seed=0)
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        for repeat in range(args.repeats):
            for name in results:
                workdir = tmp / f"{name}-{repeat}"
                workdir.mkdir()
                result = workdir / "result.json"
                cmd = [sys.executable, __file__, "--worker", name, "--model", str(model), "--data", str(data),
                       "--workdir", str(workdir), "--result", str(result), "--steps", str(args.steps),
                       "--threads", str(args.threads)]
                subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
                results[name].append(json.loads(result.read_text()))

    def median(name: str, key: str) -> float:
        return float(np.median([r[key] for r in results[name]]))

    trl_losses = np.array(results["trl"][0]["losses"])
    pk_losses = np.array(results["prefkit"][0]["losses"])
    n = min(len(trl_losses), len(pk_losses))
    summary = {
        "steps": args.steps,
        "repeats": args.repeats,
        "threads": args.threads or torch.get_num_threads(),
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "trl": trl.__version__, "prefkit": prefkit.__version__},
        "tokens_per_s": {k: median(k, "tokens_per_s") for k in results},
        "peak_rss_mib": {k: median(k, "peak_rss_mib") for k in results},
        "tokens": {k: results[k][0]["tokens"] for k in results},
        "ratio_vs_trl": median("prefkit", "tokens_per_s") / median("trl", "tokens_per_s"),
        "ratio_vs_trl_precompute": median("prefkit", "tokens_per_s") / median("trl-precompute", "tokens_per_s"),
        "packed_ratio_vs_trl": median("prefkit-packed", "tokens_per_s") / median("trl", "tokens_per_s"),
        "packed_loss_max_abs_diff": float(np.abs(np.array(results["prefkit-packed"][0]["losses"])[:n]
                                                 - pk_losses[:n]).max()),
        "loss_max_abs_diff": float(np.abs(trl_losses[:n] - pk_losses[:n]).max()),
        "loss_first_last": {"trl": [float(trl_losses[0]), float(trl_losses[-1])],
                            "prefkit": [float(pk_losses[0]), float(pk_losses[-1])]},
    }
    if args.json:
        print(json.dumps(summary))
        return
    print(f"DPO on CPU, {args.steps} steps, batch 8 pairs, max length 128, fp32 (threads {summary['threads']}, "
          f"median of {args.repeats})")
    print("| run | tokens/s | peak RSS (MiB) | tokens |")
    print("|---|---|---|---|")
    for k in results:
        print(f"| {k} | {summary['tokens_per_s'][k]:.0f} | {summary['peak_rss_mib'][k]:.0f} | {summary['tokens'][k]} |")
    print(f"prefkit / TRL = {summary['ratio_vs_trl']:.2f}x; prefkit / TRL (precomputed reference) = "
          f"{summary['ratio_vs_trl_precompute']:.2f}x; prefkit packed / TRL = {summary['packed_ratio_vs_trl']:.2f}x "
          f"(packed vs padded losses within {summary['packed_loss_max_abs_diff']:.1e})")
    print(f"loss trajectory: max |TRL - prefkit| over {n} steps = {summary['loss_max_abs_diff']:.2e}; "
          f"first/last TRL {summary['loss_first_last']['trl']}, prefkit {summary['loss_first_last']['prefkit']}")


if __name__ == "__main__":
    main()
