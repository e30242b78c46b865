"""What each scaling option costs in memory, measured on CPU (peak RSS of one DPO run).

One Llama-shaped model built from a config (hidden 256, 4 layers, 8 heads, untied head, a
word-level vocabulary of 8,192), 256 synthetic pairs of 200-480 tokens, DPO, batch 8 pairs,
max length 512, fp32, 4 steps. Each variant runs in its own process; the figure is the peak
resident set size (``ru_maxrss``), which includes about 400 MiB of imported libraries.

- ``default``: chunked LM head, padded rows, reference log-probs precomputed (the reference is
  freed before training);
- ``full-logits``: the same with the LM head over every position at once (what a plain
  ``model(...).logits`` computes);
- ``packing``: ``train.packing=true``;
- ``lora``: ``lora.r=16`` (the reference is the base with adapters off: no copy);
- ``checkpointing``: ``train.gradient_checkpointing=true``.

    PYTHONPATH=. python benchmarks/memory_cpu.py [--variants default packing ...] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

VARIANTS = {
    "default": [],
    "full-logits": [],
    "packing": ["train.packing=true"],
    "lora": ["lora.r=16", "lora.alpha=32"],
    "checkpointing": ["train.gradient_checkpointing=true"],
}


def make_inputs(tmp: Path) -> tuple[Path, Path]:
    import numpy as np

    from prefkit.config import TinyConfig
    from prefkit.data import PairRecord, write_jsonl
    from prefkit.policy import build_tiny_checkpoint

    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(8000)]
    pairs = []
    for _ in range(256):
        prompt = " ".join(rng.choice(words, size=int(rng.integers(40, 80))))
        chosen = " ".join(rng.choice(words[:4000], size=int(rng.integers(160, 400))))
        rejected = " ".join(rng.choice(words[4000:], size=int(rng.integers(160, 400))))
        pairs.append(PairRecord(prompt, chosen, rejected))
    data = write_jsonl(pairs, tmp / "pairs.jsonl")
    texts = [" ".join(words)]
    model = build_tiny_checkpoint(tmp / "model", texts, TinyConfig(hidden_size=256, layers=4, heads=8, max_vocab=8192,
                                                                 max_position_embeddings=1024), seed=0)
    return data, model


def worker(args: argparse.Namespace) -> None:
    os.environ["PREFKIT_CACHE"] = str(Path(args.workdir) / "cache")
    import functools

    import torch

    from prefkit.config import RunConfig, load
    from prefkit.engine import train
    from prefkit.engine.offline import shapes

    torch.set_num_threads(max(1, args.threads))
    if args.worker == "full-logits":
        shapes.sequence_logps = functools.partial(shapes.sequence_logps, chunk_size=None)
    cfg = load(RunConfig, None, [
        "method=dpo", f"model={args.model}", f"data.path={args.data}", f"out={Path(args.workdir) / 'run'}",
        "train.steps=4", "train.batch_size=8", "train.max_length=512", "train.lr=1e-5", "train.log_every=1",
        "train.final_checkpoint=false", "train.bucket_overhead=0", *VARIANTS[args.worker],
    ])
    result = train(cfg, progress=False)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    Path(args.result).write_text(json.dumps({"peak_rss_mib": peak, "tokens": result.metrics["tokens"],
                                             "final_loss": result.metrics["final_loss"]}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--worker", choices=list(VARIANTS), help=argparse.SUPPRESS)
    for name in ("model", "data", "workdir", "result"):
        parser.add_argument(f"--{name}", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data, model = make_inputs(tmp)
        for name in args.variants:
            workdir = tmp / name
            workdir.mkdir()
            out = workdir / "result.json"
            subprocess.run([sys.executable, __file__, "--worker", name, "--model", str(model), "--data", str(data),
                            "--workdir", str(workdir), "--result", str(out), "--threads", str(args.threads)],
                           check=True, env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
                           stdout=subprocess.DEVNULL)
            results[name] = json.loads(out.read_text())
    if args.json:
        print(json.dumps(results))
        return
    base = results.get("default", {}).get("peak_rss_mib")
    print("| variant | peak RSS (MiB) | vs default | final loss |")
    print("|---|---|---|---|")
    for name, r in results.items():
        delta = f"{r['peak_rss_mib'] - base:+.0f}" if base is not None else "-"
        print(f"| {name} | {r['peak_rss_mib']:.0f} | {delta} | {r['final_loss']:.4f} |")


if __name__ == "__main__":
    main()
