"""Memory of the LoRA reference: "adapters off" (a view of the trained model) vs a deep copy.

Each variant runs in a fresh process: build a Llama-shaped tiny-preset policy, add LoRA
adapters (``lora.r``), build the reference, then train a few DPO steps through the engine (the
reference scores every pair once for the log-prob cache). Reported per variant: the resident
memory added by building the reference (RSS after minus before) and the process's peak RSS
over the whole run (``ru_maxrss``). Variants:

- ``lora-view``: the default, the reference is the policy's own model under ``disable_adapter()``;
- ``lora-copy``: the same run with the reference forced to a deep copy (what the engine did before);
- ``full-copy``: no LoRA (every weight trains; AdamW state for all of them), deep-copied reference.

Usage: ``PYTHONPATH=. python benchmarks/lora_memory.py [--hidden 512 --layers 8]``.
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


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def run_variant(variant: str, hidden: int, layers: int, steps: int) -> dict[str, float]:
    import torch

    import prefkit.engine.models as models
    from prefkit.config import RunConfig, load
    from prefkit.engine import TrainData, train
    from tests.engine.conftest import make_pairs

    torch.set_num_threads(1)
    built: dict[str, float] = {}
    real = models.initial_reference

    def measured(policy):
        if variant == "lora-copy":
            models.adapters_off = lambda model: None
        before = rss_mib()
        reference = real(policy)
        built["reference_mib"] = rss_mib() - before
        return reference

    models.initial_reference = measured
    overrides = [] if variant == "full-copy" else ["lora.r=16", "lora.alpha=32"]
    with tempfile.TemporaryDirectory() as out:
        os.environ["PREFKIT_CACHE"] = str(Path(out) / "cache")
        cfg = load(RunConfig, None, [
            "method=dpo", f"out={out}/run", f"tiny.hidden_size={hidden}", f"tiny.layers={layers}", "tiny.heads=8",
            f"train.steps={steps}", "train.batch_size=4", "train.max_length=64", "train.log_every=1",
            "train.device=cpu", *overrides,
        ])
        result = train(cfg, data=TrainData(pairs=make_pairs(16)), progress=False)
    params = result.metrics.get("lora_total_params") or sum(p.numel() for p in result.policy.model.parameters())
    return {"variant": variant, "params": params, "weights_mib": params * 4 / 2**20,
            "reference_mib": built["reference_mib"], "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def forward_cost(hidden: int, layers: int, repeats: int = 50) -> dict[str, float]:
    """Median ms of one no-grad forward (8 rows x 16 tokens) of the deep-copied base and of the
    adapters-off view (the view toggles every LoRA layer off and on: Python overhead per call)."""
    import copy
    import statistics
    import time

    import torch

    from prefkit.config import LoraConfig, TinyConfig
    from prefkit.policy import Policy
    from prefkit.policy.lora import AdaptersOff, apply_lora

    torch.set_num_threads(1)
    words = [f"w{i}" for i in range(200)]
    policy = Policy.tiny([" ".join(words)], TinyConfig(hidden_size=hidden, layers=layers, heads=8), seed=0)
    copied = copy.deepcopy(policy.model).eval()
    view = AdaptersOff(apply_lora(policy.model, LoraConfig(r=16, alpha=32)))
    ids = torch.randint(0, 200, (8, 16))
    out = {}
    for name, model in (("copy", copied), ("view", view)):
        times = []
        with torch.no_grad():
            for _ in range(repeats + 5):
                began = time.perf_counter()
                model(input_ids=ids, use_cache=False)
                times.append(time.perf_counter() - began)
        out[name] = statistics.median(times[5:]) * 1e3
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        print(json.dumps(run_variant(args.variant, args.hidden, args.layers, args.steps)))
        return
    rows = []
    for variant in ("lora-view", "lora-copy", "full-copy"):
        done = subprocess.run([sys.executable, __file__, "--variant", variant, "--hidden", str(args.hidden),
                               "--layers", str(args.layers), "--steps", str(args.steps)],
                              capture_output=True, text=True, check=True, env={**os.environ, "PYTHONPATH": "."})
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    print(f"Llama-shaped tiny preset, hidden {args.hidden}, {args.layers} layers; {rows[0]['params']:,} parameters "
          f"({rows[0]['weights_mib']:.0f} MiB in fp32); DPO, {args.steps} steps, batch 4, fp32, CPU")
    print("| variant | reference built (MiB RSS) | peak RSS of the run (MiB) |")
    print("|---|---:|---:|")
    for row in rows:
        print(f"| {row['variant']} | {row['reference_mib']:.1f} | {row['peak_rss_mib']:.0f} |")
    cost = forward_cost(args.hidden, args.layers)
    print(f"\nOne reference forward (8 x 16 tokens, no grad, 1 thread), median of 50: deep copy "
          f"{cost['copy']:.1f} ms, adapters-off view {cost['view']:.1f} ms")


if __name__ == "__main__":
    main()
