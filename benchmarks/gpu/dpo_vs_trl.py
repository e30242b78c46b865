"""DPO on one GPU: prefkit against TRL 1.16's DPOTrainer, same data, same settings (issue 9, item 6).

Models: random-initialised Qwen2 networks with the published Qwen2.5-0.5B and Qwen2.5-1.5B
shapes (``SHAPES``; vocabulary 151936, tied embeddings; nothing is downloaded), built once and
saved as Hugging Face checkpoints that every run loads. Data: synthetic pairs over a word-level
tokenizer fitted locally (8000 words, one word one token; the models keep the published
151936-row vocabulary, so the LM head costs what it costs in the real models). Every row
``[bos] + prompt + response + [eos]`` has 896-1024 tokens: prompts of 128-383 words, responses
filling the row. Chosen responses use one half of the words and rejected ones the other, so the
loss moves from the first step (see the loss check below).

Settings, equal for both systems: 8 pairs per step (16 rows of ~960 tokens), max length 1024,
bf16 weights and bf16 autocast, ``attn_implementation`` sdpa (and flash_attention_2 when
flash-attn is installed), beta 0.1, lr 5e-5 constant, AdamW (fused), clipping 1.0, no weight
decay, no activation checkpointing, the data in one fixed order; ``--warmup`` steps (5) then
``--steps`` timed steps (30). Each configuration runs in its own process (clean CUDA caches and
a clean ``torch.cuda.max_memory_allocated``):

- ``trl``: ``DPOTrainer`` with its reference model computing log-probs inline (its default;
  TRL builds the reference from the same checkpoint);
- ``trl-precompute``: ``precompute_ref_log_probs=True`` (no reference model kept);
- ``prefkit``: ``prefkit.engine.train(cfg, policy=...)`` for ``--method dpo`` (the same engine as
  ``prefkit train``; the policy is passed in memory only to choose the attention kernel). prefkit
  always computes reference log-probs in one pass before the loop; here with an empty cache;
- ``prefkit-cached``: the same run again, the reference log-probs read from prefkit's on-disk
  reference cache (filled by the ``prefkit`` run).

Measured (times: ``torch.cuda.synchronize()`` and a clock reading at the end of every optimizer
step, through a global ``torch.optim`` step hook that fires the same way in both systems):

- tokens = non-padding tokens through the policy (chosen and rejected rows), counted from the
  data and checked exactly against each system's own per-step count;
- loop tokens/s = timed tokens / wall time of the timed steps;
- tokens/s = timed tokens / (that wall time + the reference pass's share): a run that computes
  reference log-probs before the loop (``trl-precompute``, ``prefkit``, ``prefkit-cached``) is
  charged the reference-pass time times the timed steps' share of all tokens;
- peak memory = ``torch.cuda.max_memory_allocated()`` over the whole process (peak RSS with
  ``--tiny`` on CPU);
- MFU = model FLOPs performed / (time x peak dense bf16 FLOP/s). FLOPs per row of ``s`` tokens
  (Kaplan et al. 2020, sec. 2.1, with PaLM's attention term, Chowdhery et al. 2022, app. B):
  policy forward + backward ``6 N s + 12 L d s^2``, reference forward ``2 N s + 4 L d s^2``
  (counted wherever the run computes it: inline, or its share of the precompute pass; not for a
  warm cache), with ``N`` the parameters that multiply each token (all but an untied input
  embedding; tied embeddings count once, as the LM head), ``L`` layers, ``d`` the attention width
  (heads x head dim). The attention term counts the full ``s x s`` score matrix (no causal
  discount). Peak: looked up from the device name (H100/H200 SXM 989.4 TFLOP/s, A100 312) or
  ``--peak-tflops``; without either, MFU is left empty.

Checks (a failed one makes the exit status 1; every figure is still printed and written):
per-step token counts equal across systems and equal to the data's; the first ``--check-steps``
losses and the first step's policy log-probs of every run agree with TRL's within bf16
tolerances (``--loss-atol``, ``--logps-rtol``); ``prefkit`` missed and ``prefkit-cached`` hit the
reference cache; and the loss moved from log 2 in those steps by more than twice the tolerance
(otherwise the agreement could not tell two different computations apart).

Output: one JSON line per run and one per comparison (size x attention) on stdout and in
``--out/results.jsonl`` (each line written when it is known), then Markdown tables (also
``--out/table.md``). ``--tiny``: a tiny Qwen2-shaped model on CPU in fp32 with short rows and
few steps, the same code paths end to end (tests/benchmarks/gpu/test_dpo_vs_trl.py runs it).

    PYTHONPATH=. python benchmarks/gpu/dpo_vs_trl.py [--sizes 0.5b 1.5b] [--steps 30] [--warmup 5]
        [--attn auto|sdpa|flash_attention_2 ...] [--out DIR] [--peak-tflops X] [--tiny]

``benchmarks/gpu/run_on_device.sh`` installs what a fresh GPU machine lacks and runs this.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # run as a script: make `benchmarks` and `prefkit` importable
    sys.path.insert(0, str(ROOT))

from benchmarks.dpo_trl_common import (  # noqa: E402
    in_order_trainer,
    make_data,
    pair_tokens,
    peak_rss_mib,
    prefkit_overrides,
    read_rows,
    trl_config_kwargs,
    trl_rows,
)

SYSTEMS = ("trl", "trl-precompute", "prefkit", "prefkit-cached")
REFERENCE_SYSTEM = "trl"
ATTENTION = ("sdpa", "flash_attention_2")
PAIRS_PER_STEP = 8
BETA = 0.1
SEED = 0
LOG2 = math.log(2.0)


@dataclass(frozen=True)
class Shape:
    """A Qwen2 network's shape (the published ``config.json`` values)."""

    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    vocab: int
    tied: bool
    max_positions: int
    published_params: int | None = None
    """The parameter count the model card states (a check that the shape is the published one)."""


SHAPES = {
    # Qwen2.5-0.5B: 494,032,768 parameters (0.36B without the embedding).
    "0.5b": Shape(hidden=896, intermediate=4864, layers=24, heads=14, kv_heads=2, vocab=151936, tied=True,
                  max_positions=32768, published_params=494_032_768),
    # Qwen2.5-1.5B: 1,543,714,304 parameters (1.31B without the embedding).
    "1.5b": Shape(hidden=1536, intermediate=8960, layers=28, heads=12, kv_heads=2, vocab=151936, tied=True,
                  max_positions=131072, published_params=1_543_714_304),
    # --tiny: the same architecture, small; the vocabulary is larger than the tokenizer's, as above.
    "tiny": Shape(hidden=64, intermediate=128, layers=2, heads=4, kv_heads=2, vocab=2048, tied=True,
                  max_positions=1024),
}

QWEN2_COMMON = dict(hidden_act="silu", rms_norm_eps=1e-6, initializer_range=0.02, attention_dropout=0.0,
                    use_sliding_window=False, rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0})
"""Shared by every Qwen2.5 size (``rope_theta`` 1e6, RMSNorm eps 1e-6, no sliding window)."""


@dataclass(frozen=True)
class Preset:
    """The run's scale: real (GPU, bf16) or ``--tiny`` (CPU, fp32)."""

    device: str
    precision: str
    max_length: int
    prompt_words: tuple[int, int]
    row_tokens: tuple[int, int]
    vocabulary: int
    warmup: int
    steps: int
    lr: float
    loss_atol: float
    logps_rtol: float


GPU = Preset(device="cuda", precision="bf16", max_length=1024, prompt_words=(128, 384), row_tokens=(896, 1025),
             vocabulary=8000, warmup=5, steps=30, lr=5e-5, loss_atol=2e-2, logps_rtol=1e-2)
TINY = Preset(device="cpu", precision="fp32", max_length=64, prompt_words=(8, 24), row_tokens=(48, 65),
              vocabulary=1000, warmup=2, steps=3, lr=1e-3, loss_atol=1e-4, logps_rtol=1e-4)

PEAK_BF16_TFLOPS = (
    # (every word that must appear in torch.cuda.get_device_name(), words that must not, dense bf16 TFLOP/s)
    (("H200",), ("NVL",), 989.4),
    (("H100", "HBM3"), ("NVL", "PCIe"), 989.4),
    (("H100", "SXM"), ("NVL", "PCIe"), 989.4),
    (("A100",), (), 312.0),
)
"""Dense bf16 peaks from the vendor's data sheets; other devices need ``--peak-tflops``."""


def peak_tflops_for(device_name: str) -> float | None:
    for needed, excluded, tflops in PEAK_BF16_TFLOPS:
        if all(w in device_name for w in needed) and not any(w in device_name for w in excluded):
            return tflops
    return None


# -- FLOPs ------------------------------------------------------------------------------------


def matmul_params(shape: Shape) -> int:
    """``N``: parameters that multiply each token (an untied input embedding is a lookup)."""
    d, f, layers, v = shape.hidden, shape.intermediate, shape.layers, shape.vocab
    kv = shape.kv_heads * (d // shape.heads)
    attention = d * d + d + 2 * (d * kv + kv) + d * d  # q (bias), k and v (bias), o (no bias)
    mlp = 3 * d * f
    norms = 2 * d
    return layers * (attention + mlp + norms) + d + v * d  # + final norm + LM head


def total_params(shape: Shape) -> int:
    return matmul_params(shape) + (0 if shape.tied else shape.vocab * shape.hidden)


def row_flops(shape: Shape, tokens: int, *, train: bool) -> float:
    """Model FLOPs of one row of ``tokens`` tokens: forward + backward (``train``) or forward."""
    n, width = matmul_params(shape), shape.heads * (shape.hidden // shape.heads)
    forward = 2 * n * tokens + 4 * shape.layers * width * tokens * tokens
    return 3 * forward if train else forward


# -- workers (one process per configuration) ---------------------------------------------------


def _sync(device: str):
    import torch

    return torch.cuda.synchronize if device == "cuda" else (lambda: None)


class StepClock:
    """Wall-clock time at the end of every optimizer step of any ``torch.optim`` optimizer."""

    def __init__(self, device: str) -> None:
        self.sync = _sync(device)
        self.times: list[float] = []

    def __enter__(self) -> StepClock:
        from torch.optim.optimizer import register_optimizer_step_post_hook

        self.handle = register_optimizer_step_post_hook(self._tick)
        return self

    def _tick(self, optimizer, args, kwargs) -> None:
        self.sync()
        self.times.append(time.perf_counter())

    def __exit__(self, *exc) -> None:
        self.handle.remove()


def load_model(args: argparse.Namespace):
    """The checkpoint as both systems get it: weights in the run's precision, on its device."""
    import torch
    from transformers import AutoModelForCausalLM

    dtype = torch.bfloat16 if args.precision == "bf16" else torch.float32
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=dtype, attn_implementation=args.attn)
    return model.to(args.device)


def load_tokenizer(args: argparse.Namespace):
    """The word-level tokenizer saved beside the model. Loaded as what it is: ``AutoTokenizer``
    would see the Qwen2 config and rebuild a Qwen2 (BPE) tokenizer from its vocabulary, which
    turns every word into nothing."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast.from_pretrained(args.model)


def run_trl(args: argparse.Namespace, precompute: bool) -> dict[str, Any]:
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    sync = _sync(args.device)

    class TimedDPOTrainer(in_order_trainer(DPOTrainer)):
        """Times TRL's reference pass (it runs inside ``__init__``)."""

        ref_pass_s = 0.0

        def _precompute_ref_logps(self, *a, **k):
            sync()
            start = time.perf_counter()
            out = super()._precompute_ref_logps(*a, **k)
            sync()
            TimedDPOTrainer.ref_pass_s += time.perf_counter() - start
            return out

    tokenizer = load_tokenizer(args)
    dataset = Dataset.from_list(trl_rows(read_rows(args.data)))
    model = load_model(args)
    config = DPOConfig(**trl_config_kwargs(
        Path(args.workdir) / "trl", steps=args.total_steps, batch_size=PAIRS_PER_STEP, max_length=args.max_length,
        lr=args.lr, beta=BETA, bf16=args.precision == "bf16", precompute=precompute,
        gradient_checkpointing=args.gradient_checkpointing, use_cpu=args.device == "cpu",
    ))
    trainer = TimedDPOTrainer(model=model, ref_model=None, args=config, train_dataset=dataset,
                              processing_class=tokenizer)
    with StepClock(args.device) as clock:
        trainer.train()
    logged = [h for h in trainer.state.log_history if "loss" in h]
    return {
        "step_times": clock.times,
        "tokens_cumulative": [int(h["num_tokens"]) for h in logged],
        "losses": [float(h["loss"]) for h in logged],
        "logps_chosen_step1": float(logged[0]["logps/chosen"]),
        "logps_rejected_step1": float(logged[0]["logps/rejected"]),
        "ref_pass_s": TimedDPOTrainer.ref_pass_s,
        "ref_cache_hit": None,
    }


def run_prefkit(args: argparse.Namespace) -> dict[str, Any]:
    os.environ["PREFKIT_CACHE"] = args.cache
    from prefkit.config import RunConfig, load
    from prefkit.engine import train
    from prefkit.policy import Policy, check_fast_path

    policy = Policy(load_model(args), load_tokenizer(args))
    fast_path = check_fast_path(policy.model)  # what Policy.load does
    overrides = prefkit_overrides(
        args.model, args.data, Path(args.workdir) / "prefkit", steps=args.total_steps, batch_size=PAIRS_PER_STEP,
        max_length=args.max_length, lr=args.lr, beta=BETA, precision=args.precision,
    )
    overrides += [f"train.device={args.device}", f"train.gradient_checkpointing={str(args.gradient_checkpointing).lower()}"]
    cfg = load(RunConfig, None, overrides)
    with StepClock(args.device) as clock:
        result = train(cfg, policy=policy, progress=False)
    history = result.history
    return {
        "step_times": clock.times,
        "tokens_cumulative": [int(h["tokens"]) for h in history],
        "losses": [float(h["loss"]) for h in history],
        "logps_chosen_step1": float(history[0]["logps/chosen"]),
        "logps_rejected_step1": float(history[0]["logps/rejected"]),
        "ref_pass_s": float(result.metrics["ref_logps_s"]),
        "ref_cache_hit": bool(result.metrics["ref_cache_hit"]),
        "chunked_head": fast_path,
    }


def qwen2_config(shape: Shape, **token_ids: int):
    """A ``Qwen2Config`` of ``shape`` (special-token ids of the tokenizer as keywords)."""
    from transformers import Qwen2Config

    return Qwen2Config(
        vocab_size=shape.vocab, hidden_size=shape.hidden, intermediate_size=shape.intermediate,
        num_hidden_layers=shape.layers, num_attention_heads=shape.heads, num_key_value_heads=shape.kv_heads,
        max_position_embeddings=shape.max_positions, sliding_window=shape.max_positions,
        max_window_layers=shape.layers, tie_word_embeddings=shape.tied, **token_ids, **QWEN2_COMMON,
    )


def build_models(args: argparse.Namespace) -> dict[str, Any]:
    """The tokenizer (fitted on the data) and one random-initialised checkpoint per size."""
    import torch
    import transformers
    from transformers import Qwen2ForCausalLM

    from prefkit.policy.tokenizer import fit_word_tokenizer

    rows = read_rows(args.data)
    tokenizer = fit_word_tokenizer([t for r in rows for t in (r["prompt"], r["chosen"], r["rejected"])],
                                   max_vocab=args.vocabulary + 64)
    dtype = torch.bfloat16 if args.precision == "bf16" else torch.float32
    models = {}
    for size in args.sizes:
        shape = SHAPES[size]
        if len(tokenizer) > shape.vocab:
            raise SystemExit(f"{size}: the tokenizer has {len(tokenizer)} entries, more than the model's {shape.vocab}")
        config = qwen2_config(shape, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                              pad_token_id=tokenizer.pad_token_id)
        torch.manual_seed(SEED)
        with torch.device(args.device):
            model = Qwen2ForCausalLM(config)
        model.to(dtype)
        model.generation_config.pad_token_id = tokenizer.pad_token_id
        counted = sum(p.numel() for p in model.parameters())
        if counted != total_params(shape) or (shape.published_params and counted != shape.published_params):
            raise SystemExit(f"{size}: {counted} parameters, expected {total_params(shape)} "
                             f"(published: {shape.published_params})")
        directory = Path(args.workdir) / f"model-{size}"
        model.save_pretrained(directory)
        tokenizer.save_pretrained(directory)
        models[size] = {"path": str(directory), "params": counted, "matmul_params": matmul_params(shape)}
        del model
    info: dict[str, Any] = {"models": models, "tokenizer_entries": len(tokenizer), "torch": torch.__version__,
                            "transformers": transformers.__version__}
    if args.device == "cuda":
        info.update(device_name=torch.cuda.get_device_name(), cuda=torch.version.cuda,
                    gpu_memory_gib=torch.cuda.get_device_properties(0).total_memory / 2**30)
    else:
        info.update(device_name=f"CPU ({os.cpu_count()} cores)")
    return info


def worker(args: argparse.Namespace) -> None:
    import torch

    started = time.perf_counter()
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    else:
        torch.set_num_threads(1)  # --tiny: a smoke test that shares its CPU with other work
    if args.worker == "build":
        out = build_models(args)
    else:
        out = run_prefkit(args) if args.worker.startswith("prefkit") else run_trl(args, args.worker == "trl-precompute")
        if args.device == "cuda":
            out["peak_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
            out["peak_reserved_gib"] = torch.cuda.max_memory_reserved() / 2**30
        else:
            out["peak_memory_gib"] = peak_rss_mib() / 1024
        out["process_s"] = time.perf_counter() - started
    Path(args.result).write_text(json.dumps(out))


# -- the parent: data, runs, checks, tables -----------------------------------------------------


def versions() -> dict[str, str | None]:
    def version(name: str) -> str | None:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return None

    return {name: version(name) for name in ("torch", "transformers", "trl", "accelerate", "datasets", "flash-attn")}


def flash_attention_installed() -> bool:
    return importlib.util.find_spec("flash_attn") is not None


def resolve_attention(requested: list[str]) -> list[str]:
    """``auto``: sdpa, plus flash_attention_2 when flash-attn is installed."""
    out: list[str] = []
    for name in requested:
        names = ["sdpa", *(["flash_attention_2"] if flash_attention_installed() else [])] if name == "auto" else [name]
        for n in names:
            if n not in ATTENTION:
                raise SystemExit(f"--attn: unknown attention {n!r} (known: auto, {', '.join(ATTENTION)})")
            if n == "flash_attention_2" and not flash_attention_installed():
                raise SystemExit("--attn flash_attention_2: flash-attn is not installed (pip install flash-attn)")
            if n not in out:
                out.append(n)
    return out


class Runner:
    """Starts one worker process per configuration and keeps every result line."""

    def __init__(self, args: argparse.Namespace, workdir: Path, data: Path) -> None:
        self.args, self.workdir, self.data = args, workdir, data
        self.env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
        self.env.setdefault("TOKENIZERS_PARALLELISM", "false")
        self.results_path = Path(args.out) / "results.jsonl" if args.out else None
        if self.results_path:
            self.results_path.parent.mkdir(parents=True, exist_ok=True)
            self.results_path.write_text("")
        self.lines: list[dict[str, Any]] = []

    def call(self, name: str, extra: list[str], scratch: Path) -> dict[str, Any]:
        scratch.mkdir(parents=True, exist_ok=True)
        result = scratch / "result.json"
        a = self.args
        cmd = [sys.executable, __file__, "--worker", name, "--data", str(self.data), "--workdir", str(scratch),
               "--result", str(result), "--device", a.device, "--precision", a.precision,
               "--max-length", str(a.max_length), "--lr", repr(a.lr), "--total-steps", str(a.warmup + a.steps),
               "--vocabulary", str(a.vocabulary), "--sizes", *a.sizes, *extra]
        if a.gradient_checkpointing:
            cmd.append("--gradient-checkpointing")
        log = scratch / "log.txt"
        with log.open("w") as handle:
            try:
                proc = subprocess.run(cmd, env=self.env, stdout=handle, stderr=subprocess.STDOUT,
                                      timeout=a.worker_timeout)
                code = proc.returncode
            except subprocess.TimeoutExpired:
                code = "timeout"
        if code != 0 or not result.exists():
            tail = log.read_text(errors="replace")[-3000:]
            return {"status": "failed", "exit": code, "error": tail}
        return {"status": "ok", **json.loads(result.read_text())}

    def emit(self, line: dict[str, Any]) -> None:
        self.lines.append(line)
        text = json.dumps(line)
        print(text, flush=True)
        if self.results_path:
            with self.results_path.open("a") as handle:
                handle.write(text + "\n")


def summarise(raw: dict[str, Any], system: str, size: str, attn: str, args: argparse.Namespace,
              step_tokens: list[int], step_rows: list[list[int]], peak: float | None) -> dict[str, Any]:
    """A run's figures from its raw per-step record (see the module docstring for definitions)."""
    line: dict[str, Any] = {"kind": "run", "size": size, "attn": attn, "system": system, "status": raw["status"],
                            "device": args.device, "precision": args.precision, "warmup": args.warmup,
                            "steps": args.steps, "pairs_per_step": PAIRS_PER_STEP, "max_length": args.max_length}
    if raw["status"] != "ok":
        return {**line, "error": raw.get("error"), "exit": raw.get("exit")}
    shape, w, s = SHAPES[size], args.warmup, args.steps
    times = raw["step_times"]
    counted = [b - a for a, b in zip([0, *raw["tokens_cumulative"]], raw["tokens_cumulative"])]
    problems = []
    if len(times) != w + s:
        problems.append(f"{len(times)} optimizer steps timed, expected {w + s}")
    if counted != step_tokens:
        problems.append(f"per-step tokens {counted[:4]}... differ from the data's {step_tokens[:4]}...")
    if problems:
        return {**line, "status": "failed", "error": "; ".join(problems)}
    timed_tokens = sum(step_tokens[w:])
    window = times[w + s - 1] - times[w - 1]
    durations = sorted(b - a for a, b in zip(times[w - 1 :], times[w:]))
    reference_share = raw["ref_pass_s"] * timed_tokens / sum(step_tokens)
    wall = window + reference_share
    rows = [r for step in step_rows[w:] for r in step]
    flops = sum(row_flops(shape, r, train=True) for r in rows)
    if system != "prefkit-cached":  # every other run computes the reference forward (inline or in a pass)
        flops += sum(row_flops(shape, r, train=False) for r in rows)
    achieved = flops / wall / 1e12
    line.update(
        tokens_per_s=timed_tokens / wall,
        loop_tokens_per_s=timed_tokens / window,
        peak_memory_gib=raw["peak_memory_gib"],
        peak_memory_kind="cuda max_memory_allocated" if args.device == "cuda" else "peak RSS",
        peak_reserved_gib=raw.get("peak_reserved_gib"),
        model_tflops_per_s=achieved,
        mfu=achieved / peak if peak else None,
        timed_tokens=timed_tokens,
        timed_s=window,
        ref_pass_s=raw["ref_pass_s"],
        ref_share_s=reference_share,
        ref_cache_hit=raw["ref_cache_hit"],
        chunked_head=raw.get("chunked_head"),
        losses=raw["losses"][: max(args.check_steps, 5)],
        logps_chosen_step1=raw["logps_chosen_step1"],
        logps_rejected_step1=raw["logps_rejected_step1"],
        step_s_median=durations[(len(durations) - 1) // 2],
        process_s=raw["process_s"],
    )
    return line


def compare(runs: dict[str, dict[str, Any]], size: str, attn: str, args: argparse.Namespace) -> dict[str, Any]:
    """Checks and ratios of one size and attention kernel."""
    problems: list[str] = []
    ok = {k: v for k, v in runs.items() if v["status"] == "ok"}
    for k, v in runs.items():
        if v["status"] != "ok":
            problems.append(f"{k}: {str(v.get('error'))[-300:]}")
    base = ok.get(REFERENCE_SYSTEM)
    agreement: dict[str, float] = {}
    logps: dict[str, float] = {}
    if base is None:
        problems.append(f"no {REFERENCE_SYSTEM} run to check the others against")
    else:
        k_steps = args.check_steps
        for k, v in ok.items():
            if k == REFERENCE_SYSTEM:
                continue
            agreement[k] = max(abs(a - b) for a, b in zip(v["losses"][:k_steps], base["losses"][:k_steps]))
            logps[k] = max(abs(v[f] - base[f]) / abs(base[f]) for f in ("logps_chosen_step1", "logps_rejected_step1"))
            if agreement[k] > args.loss_atol:
                problems.append(f"{k}: losses of steps 1-{k_steps} differ from TRL's by {agreement[k]:.3g} "
                                f"(tolerance {args.loss_atol:g})")
            if logps[k] > args.logps_rtol:
                problems.append(f"{k}: step-1 policy log-probs differ from TRL's by {logps[k]:.3g} relative "
                                f"(tolerance {args.logps_rtol:g})")
    moved = max(abs(x - LOG2) for x in base["losses"][: args.check_steps]) if base else None
    if moved is not None and moved <= 2 * args.loss_atol:
        problems.append(f"the loss moved only {moved:.3g} from log 2 in steps 1-{args.check_steps}, not more than twice "
                        f"the tolerance: the agreement check cannot tell the systems apart (raise --lr or --check-steps)")
    if "prefkit" in ok and ok["prefkit"]["ref_cache_hit"]:
        problems.append("prefkit: the reference cache was not empty (its reference pass is not measured)")
    if "prefkit-cached" in ok and not ok["prefkit-cached"]["ref_cache_hit"]:
        problems.append("prefkit-cached: the reference cache missed (run prefkit first)")

    def ratio(a: str, b: str, key: str) -> float | None:
        return ok[a][key] / ok[b][key] if a in ok and b in ok else None

    line = {
        "kind": "comparison", "size": size, "attn": attn,
        "prefkit_vs_trl_tokens_per_s": ratio("prefkit", "trl", "tokens_per_s"),
        "prefkit_vs_trl_precompute_tokens_per_s": ratio("prefkit", "trl-precompute", "tokens_per_s"),
        "prefkit_cached_vs_trl_precompute_tokens_per_s": ratio("prefkit-cached", "trl-precompute", "tokens_per_s"),
        "prefkit_vs_trl_peak_memory": ratio("prefkit", "trl", "peak_memory_gib"),
        "prefkit_vs_trl_precompute_peak_memory": ratio("prefkit", "trl-precompute", "peak_memory_gib"),
        "loss_check_steps": args.check_steps,
        "loss_max_abs_diff_vs_trl": agreement,
        "logps_step1_rel_diff_vs_trl": logps,
        "loss_moved_from_log2": moved,
        "checks_passed": not problems,
        "problems": problems,
    }
    if size == "1.5b" and "prefkit" in ok:  # issue 9's targets are stated at 1.5B
        line["targets"] = {
            "tokens_per_s_ratio>=2": bool(line["prefkit_vs_trl_tokens_per_s"] and line["prefkit_vs_trl_tokens_per_s"] >= 2),
            "peak_memory_ratio<=0.6": bool(line["prefkit_vs_trl_peak_memory"] and line["prefkit_vs_trl_peak_memory"] <= 0.6),
            "mfu>=0.35": bool(ok["prefkit"]["mfu"] and ok["prefkit"]["mfu"] >= 0.35),
        }
    return line


def _fmt(value: float | None, spec: str, suffix: str = "") -> str:
    return "–" if value is None else f"{value:{spec}}{suffix}"


def tables(lines: list[dict[str, Any]]) -> str:
    runs = [x for x in lines if x["kind"] == "run"]
    comparisons = [x for x in lines if x["kind"] == "comparison"]
    out = ["| model | attention | system | tokens/s | loop tokens/s | peak memory (GiB) | MFU | reference pass (s) "
           "| median step (s) | losses, steps 1-3 |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        if r["status"] != "ok":
            out.append(f"| {r['size']} | {r['attn']} | {r['system']} | failed | | | | | | |")
            continue
        out.append(
            f"| {r['size']} | {r['attn']} | {r['system']} | {r['tokens_per_s']:,.0f} | {r['loop_tokens_per_s']:,.0f} "
            f"| {r['peak_memory_gib']:.2f} | {_fmt(r['mfu'] and 100 * r['mfu'], '.1f', '%')} | {r['ref_pass_s']:.2f} "
            f"| {r['step_s_median']:.3f} | {', '.join(f'{x:.4f}' for x in r['losses'][:3])} |")
    out += ["", "| model | attention | prefkit / TRL tokens/s | prefkit / TRL (precomputed) | prefkit cached / TRL "
            "(precomputed) | prefkit / TRL peak memory | loss diff vs TRL (max) | checks |",
            "|---|---|---|---|---|---|---|---|"]
    for c in comparisons:
        diff = max(c["loss_max_abs_diff_vs_trl"].values(), default=None)
        out.append(
            f"| {c['size']} | {c['attn']} | {_fmt(c['prefkit_vs_trl_tokens_per_s'], '.2f', 'x')} "
            f"| {_fmt(c['prefkit_vs_trl_precompute_tokens_per_s'], '.2f', 'x')} "
            f"| {_fmt(c['prefkit_cached_vs_trl_precompute_tokens_per_s'], '.2f', 'x')} "
            f"| {_fmt(c['prefkit_vs_trl_peak_memory'], '.2f', 'x')} | {_fmt(diff, '.1e')} "
            f"| {'passed' if c['checks_passed'] else 'FAILED'} |")
    return "\n".join(out) + "\n"


def step_layout(rows: list[dict[str, Any]], steps: int) -> tuple[list[int], list[list[int]]]:
    """Per step: its tokens, and the token count of each of its rows (chosen and rejected)."""
    tokens, lengths = [], []
    for k in range(steps):
        pairs = rows[k * PAIRS_PER_STEP : (k + 1) * PAIRS_PER_STEP]
        step_rows = []
        for r in pairs:
            prompt = len(r["prompt"].split())
            step_rows += [prompt + len(r["chosen"].split()) + 2, prompt + len(r["rejected"].split()) + 2]
        tokens.append(sum(pair_tokens(r) for r in pairs))
        lengths.append(step_rows)
    return tokens, lengths


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", help="model sizes: 0.5b, 1.5b (default: both)")
    parser.add_argument("--steps", type=int, help="timed steps (default 30; --tiny 3)")
    parser.add_argument("--warmup", type=int, help="untimed steps before them (default 5; --tiny 2)")
    parser.add_argument("--attn", nargs="+", default=["auto"],
                        help="attention kernels: auto (sdpa, plus flash_attention_2 when flash-attn is installed), "
                             "sdpa, flash_attention_2")
    parser.add_argument("--systems", nargs="+", choices=SYSTEMS, default=list(SYSTEMS),
                        help="which runs (prefkit-cached needs prefkit before it)")
    parser.add_argument("--out", help="directory for results.jsonl and table.md")
    parser.add_argument("--peak-tflops", type=float, help="the device's dense bf16 peak (default: from its name)")
    parser.add_argument("--lr", type=float, help="learning rate (default 5e-5; --tiny 1e-3)")
    parser.add_argument("--check-steps", type=int, default=3, help="losses compared with TRL's: the first N steps")
    parser.add_argument("--loss-atol", type=float, help="loss tolerance (default 2e-2 in bf16, 1e-4 in fp32)")
    parser.add_argument("--logps-rtol", type=float, help="step-1 log-prob tolerance (default 1e-2 bf16, 1e-4 fp32)")
    parser.add_argument("--gradient-checkpointing", action="store_true", help="activation checkpointing, both systems")
    parser.add_argument("--worker-timeout", type=float, default=600.0, help="seconds for one run's process")
    parser.add_argument("--tiny", action="store_true", help="tiny model on CPU, fp32, short rows: a smoke test")
    # worker-only
    parser.add_argument("--worker", choices=["build", *SYSTEMS], help=argparse.SUPPRESS)
    for hidden in ("--model", "--data", "--workdir", "--result", "--cache", "--device", "--precision"):
        parser.add_argument(hidden, help=argparse.SUPPRESS)
    parser.add_argument("--max-length", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--total-steps", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--vocabulary", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        args.sizes = args.sizes or []
        args.attn = args.attn[0]
        return args

    preset = TINY if args.tiny else GPU
    if args.tiny and args.sizes:
        parser.error("--tiny runs the tiny model only; leave out --sizes")
    unknown = [s for s in args.sizes or () if s not in ("0.5b", "1.5b")]
    if unknown:
        parser.error(f"--sizes: unknown size {unknown[0]!r} (known: 0.5b, 1.5b)")
    args.sizes = ["tiny"] if args.tiny else (args.sizes or ["0.5b", "1.5b"])
    args.steps = preset.steps if args.steps is None else args.steps
    args.warmup = preset.warmup if args.warmup is None else args.warmup
    args.lr = preset.lr if args.lr is None else args.lr
    args.loss_atol = preset.loss_atol if args.loss_atol is None else args.loss_atol
    args.logps_rtol = preset.logps_rtol if args.logps_rtol is None else args.logps_rtol
    args.device, args.precision, args.max_length = preset.device, preset.precision, preset.max_length
    args.preset = preset
    args.vocabulary = preset.vocabulary
    if args.steps < 2 or args.warmup < 1:
        parser.error("--steps must be at least 2 and --warmup at least 1 (the first step has no start time)")
    if not 1 <= args.check_steps <= args.warmup + args.steps:
        parser.error("--check-steps must be between 1 and the number of steps")
    if "prefkit-cached" in args.systems and "prefkit" not in args.systems:
        parser.error("--systems: prefkit-cached reads the cache that the prefkit run fills; include prefkit")
    if REFERENCE_SYSTEM not in args.systems:
        parser.error("--systems: include trl (every other run is checked against it)")
    args.systems = [s for s in SYSTEMS if s in args.systems]  # prefkit before prefkit-cached
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        worker(args)
        return 0
    if not args.tiny:
        import torch

        if not torch.cuda.is_available():
            raise SystemExit("no CUDA device: this benchmark needs a GPU (--tiny runs a CPU smoke test)")
    attention = resolve_attention(args.attn)
    total_steps = args.warmup + args.steps
    workdir = Path(tempfile.mkdtemp(prefix="prefkit-gpu-bench-"))
    try:
        lines = run_all(args, attention, total_steps, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    failed = [c for c in lines if c["kind"] == "comparison" and not c["checks_passed"]]
    for c in failed:
        print(f"CHECK FAILED ({c['size']}, {c['attn']}): " + "; ".join(c["problems"]), file=sys.stderr)
    return 1 if failed else 0


def run_all(args: argparse.Namespace, attention: list[str], total_steps: int, workdir: Path) -> list[dict[str, Any]]:
    """Data, models, every run and comparison; returns the emitted lines."""
    p = args.preset
    data = make_data(workdir, total_steps * PAIRS_PER_STEP, SEED, vocabulary=p.vocabulary,
                     prompt_words=p.prompt_words, row_tokens=p.row_tokens, separable=True)
    rows = read_rows(data)
    step_tokens, step_rows = step_layout(rows, total_steps)
    if max(r for step in step_rows for r in step) > args.max_length:
        raise SystemExit("a row is longer than max length: the data generator is wrong")
    runner = Runner(args, workdir, data)
    built = runner.call("build", [], workdir / "build")
    if built["status"] != "ok":
        raise SystemExit(f"building the models failed:\n{built['error']}")
    peak = args.peak_tflops or (peak_tflops_for(built["device_name"]) if args.device == "cuda" else None)
    runner.emit({"kind": "setup", "device_name": built["device_name"], "peak_bf16_tflops": peak,
                 "cuda": built.get("cuda"), "versions": versions(), "python": sys.version.split()[0],
                 "models": built["models"], "tokenizer_entries": built["tokenizer_entries"],
                 "rows_mean_tokens": sum(step_tokens) / (2 * PAIRS_PER_STEP * total_steps),
                 "attn": attention, "systems": args.systems, "date": time.strftime("%Y-%m-%d")})
    for size in args.sizes:
        model = built["models"][size]["path"]
        for attn in attention:
            cache = workdir / f"refcache-{size}-{attn}"
            runs: dict[str, dict[str, Any]] = {}
            for system in args.systems:
                scratch = workdir / f"{size}-{attn}-{system}"
                raw = runner.call(system, ["--model", model, "--attn", attn, "--cache", str(cache)], scratch)
                shutil.rmtree(scratch / "prefkit", ignore_errors=True)  # checkpoints: GBs at 1.5B
                shutil.rmtree(scratch / "trl", ignore_errors=True)
                runs[system] = summarise(raw, system, size, attn, args, step_tokens, step_rows, peak)
                runner.emit(runs[system])
            runner.emit(compare(runs, size, attn, args))
        shutil.rmtree(Path(model), ignore_errors=True)
    table = tables(runner.lines)
    print()
    print(table)
    if args.out:
        target = Path(args.out) / "table.md"
        tmp = target.with_suffix(".md.tmp")
        tmp.write_text(table)
        os.replace(tmp, target)
    return runner.lines


if __name__ == "__main__":
    sys.exit(main())
