"""Throughput of prefkit.policy on the tiny Llama: the log-prob training step and sampling.

    PYTHONPATH=. python benchmarks/policy_throughput.py [--threads 2] [--rounds 7]

Log-probs: forward + backward through ``sequence_logps`` for 16 rows of ~100 tokens (about
half prompt, half response), hidden 128, 2 layers, 4 heads, vocabulary 1024, for both
attention kernels. "naive" is the textbook computation (full logits at every position,
log_softmax over the whole batch, gather, mask), as TRL's DPOTrainer does it. Sampling: 16
prompts x 4 samples, up to 64 new tokens, with and without the KV cache. Variants run in
interleaved rounds and the best round counts, which damps noise from other processes.
Tokens/s counts non-padding tokens (log-probs) or generated tokens (sampling). Peak memory:
each log-prob variant runs once more in a fresh process with a 32k vocabulary (a real LLM's
size), and the growth of the peak resident set over the loaded model is reported. Prints one
JSON line.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
from collections.abc import Callable

import torch
import transformers

from prefkit.config import TinyConfig
from prefkit.policy import EncodedBatch, Policy, sequence_logps

TINY = TinyConfig(hidden_size=128, layers=2, heads=4, max_vocab=1024)


def naive_sequence_logps(model: torch.nn.Module, batch: EncodedBatch) -> torch.Tensor:
    logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    logps = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    per_token = logps.gather(2, batch.input_ids[:, 1:, None]).squeeze(2)
    return (per_token * batch.response_mask[:, 1:]).sum(1)


def make_data(rng: random.Random) -> tuple[list[str], list[str]]:
    words = [f"w{i}" for i in range(40000)]

    def texts(count: int, low: int, high: int) -> list[str]:
        return [" ".join(rng.choices(words[:2000], k=rng.randint(low, high))) for _ in range(count)]

    return texts(16, 40, 60), texts(16, 35, 65)


def variant_fn(
    name: str, model: torch.nn.Module, batch: EncodedBatch
) -> Callable[[], torch.Tensor]:
    packed = batch.pack()
    return {
        "chunked": lambda: sequence_logps(model, batch)[0],
        "chunked_packed": lambda: sequence_logps(model, packed)[0],
        "full_logits": lambda: sequence_logps(model, batch, chunk_size=None)[0],
        "naive": lambda: naive_sequence_logps(model, batch),
    }[name]


def _status_mib(field: str) -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def peak_memory_child(name: str, vocab: int) -> None:
    """Run one forward + backward and print the peak RSS growth in MiB (Linux only)."""
    torch.set_num_threads(2)
    prompts, responses = make_data(random.Random(0))
    filler = " ".join(f"w{i}" for i in range(vocab))  # every word once: a full vocabulary
    cfg = TinyConfig(hidden_size=128, layers=2, heads=4, max_vocab=vocab)
    policy = Policy.tiny([*prompts, *responses, filler], cfg, seed=0)
    batch = policy.encode(prompts, responses, max_length=512)
    compute = variant_fn(name, policy.model, batch)
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")  # reset the peak resident set (VmHWM) to the current one
    before = _status_mib("VmRSS")
    compute().sum().backward()
    print(round(_status_mib("VmHWM") - before))


def best_times(variants: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    for run in variants.values():
        run()  # warm-up
    best = dict.fromkeys(variants, float("inf"))
    for _ in range(rounds):
        for name, run in variants.items():
            start = time.perf_counter()
            run()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def training_step(
    model: torch.nn.Module, compute: Callable[[], torch.Tensor]
) -> Callable[[], None]:
    def step() -> None:
        model.zero_grad(set_to_none=True)
        compute().sum().backward()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--peak-memory-child", nargs=2, metavar=("VARIANT", "VOCAB"))
    args = parser.parse_args()
    if args.peak_memory_child:
        peak_memory_child(args.peak_memory_child[0], int(args.peak_memory_child[1]))
        return
    torch.set_num_threads(args.threads)
    prompts, responses = make_data(random.Random(0))
    results: dict[str, object] = {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "threads": args.threads,
    }

    variants: dict[str, Callable[[], object]] = {}
    policies = {}
    for attention in ("sdpa", "eager"):
        policy = Policy.tiny(prompts + responses, TINY, seed=0)
        policy.model.set_attn_implementation(attention)
        policies[attention] = policy
        model = policy.model
        batch = policy.encode(prompts, responses, max_length=512)
        results["tokens_per_batch"] = batch.num_tokens
        results["vocab"] = model.config.vocab_size
        for name in ("chunked", "chunked_packed", "full_logits", "naive"):
            compute = variant_fn(name, model, batch)
            variants[f"logps_fwd_bwd_{attention}_{name}"] = training_step(model, compute)
    for name, seconds in best_times(variants, args.rounds).items():
        results[f"{name}_tok_s"] = round(int(results["tokens_per_batch"]) / seconds)

    generated: dict[str, int] = {}

    def draw(use_cache: bool, policy: Policy = policies["sdpa"]) -> None:
        samples = policy.sample(
            prompts,
            4,
            max_new_tokens=64,
            generator=torch.Generator().manual_seed(0),
            use_cache=use_cache,
        )
        generated["kv_cache" if use_cache else "no_cache"] = int(samples.lengths.sum())

    sampling = {"kv_cache": lambda: draw(True), "no_cache": lambda: draw(False)}
    for name, seconds in best_times(sampling, max(1, args.rounds // 3)).items():
        results[f"sample_{name}_tok_s"] = round(generated[name] / seconds)
    results["sample_generated_tokens"] = generated["kv_cache"]
    for name in ("chunked", "full_logits", "naive"):
        child = subprocess.run(
            [sys.executable, __file__, "--peak-memory-child", name, "32768"],
            capture_output=True,
            text=True,
            check=True,
        )
        results[f"peak_rss_growth_vocab32k_{name}_mib"] = int(child.stdout.split()[-1])
    print(json.dumps(results))


if __name__ == "__main__":
    main()
