"""benchmarks/gpu/dpo_vs_trl.py: the published model shapes, the FLOP and throughput arithmetic,
the checks that make it a comparison of one computation (and that they can fail), its refusals,
and a ``--tiny`` run end to end on CPU (both systems, every configuration, the tables).

The tests mirror the file they test (``benchmarks/gpu/``), as the rest of ``tests/`` mirrors
``prefkit/``. TRL is a test-only peer: the ``dev`` extra pins ``trl==1.16.0``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmarks.dpo_trl_common import make_pairs, pair_tokens
from benchmarks.gpu import dpo_vs_trl as bench

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "benchmarks" / "gpu" / "dpo_vs_trl.py"


# -- the models --------------------------------------------------------------------------------


@pytest.mark.parametrize("size", ["0.5b", "1.5b"])
def test_shapes_are_the_published_qwen25_ones(size):
    """A Qwen2 built (on the meta device) from the script's config has the model card's count."""
    from transformers import Qwen2ForCausalLM

    shape = bench.SHAPES[size]
    config = bench.qwen2_config(shape, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    with torch.device("meta"):
        model = Qwen2ForCausalLM(config)
    counted = sum(p.numel() for p in model.parameters())
    assert counted == shape.published_params == bench.total_params(shape)
    assert model.lm_head.weight is model.model.embed_tokens.weight  # tied, as published
    assert config.vocab_size == 151936
    assert config.rope_parameters["rope_theta"] == 1_000_000.0


def test_matmul_params_leave_out_only_an_untied_input_embedding():
    tied = bench.SHAPES["tiny"]
    untied = bench.Shape(**{**tied.__dict__, "tied": False})
    assert bench.matmul_params(untied) == bench.matmul_params(tied)
    assert bench.total_params(untied) == bench.total_params(tied) + tied.vocab * tied.hidden


def test_row_flops_worked_number():
    """0.5B, one row of 1000 tokens: forward 2 N s + 4 L d s^2, training three times that."""
    shape = bench.SHAPES["0.5b"]
    forward = 2 * 494_032_768 * 1000 + 4 * 24 * 896 * 1000**2
    assert forward == 1_074_081_536_000
    assert bench.row_flops(shape, 1000, train=False) == forward
    assert bench.row_flops(shape, 1000, train=True) == 3 * forward


@pytest.mark.parametrize(
    ("name", "peak"),
    [
        ("NVIDIA H100 80GB HBM3", 989.4),
        ("NVIDIA H200", 989.4),
        ("NVIDIA A100-SXM4-80GB", 312.0),
        ("NVIDIA H100 PCIe", None),  # other peaks: --peak-tflops, never a guess
        ("NVIDIA H200 NVL", None),
        ("Tesla T4", None),
    ],
)
def test_peak_lookup(name, peak):
    assert bench.peak_tflops_for(name) == peak


# -- the data --------------------------------------------------------------------------------


def test_long_rows_have_the_asked_lengths_and_separable_halves():
    records = make_pairs(20, 0, vocabulary=100, prompt_words=(128, 384), row_tokens=(896, 1025), separable=True)
    for r in records:
        prompt = len(r.prompt.split())
        for response in (r.chosen, r.rejected):
            assert 896 <= prompt + len(response.split()) + 2 <= 1024
        assert all(int(w[1:]) < 50 for w in r.chosen.split())
        assert all(int(w[1:]) >= 50 for w in r.rejected.split())


def test_the_cpu_benchmarks_data_is_unchanged():
    """The CPU benchmark's defaults (its RESULTS.md figures) draw the same pairs as before the
    shared module: the first record's word counts and first words."""
    first = make_pairs(512, 0)[0]
    assert (len(first.prompt.split()), len(first.chosen.split()), len(first.rejected.split())) == (35, 12, 30)
    assert first.prompt.split()[:2] == ["w636", "w511"] and first.chosen.startswith(" ")


def test_step_layout_counts_both_rows_of_every_pair():
    rows = [{"prompt": "w1 w2", "chosen": " w3", "rejected": " w4 w5"}] * 16
    tokens, lengths = bench.step_layout(rows, 2)
    assert lengths[0][:2] == [5, 6] and len(lengths[0]) == 16
    assert tokens == [8 * 11, 8 * 11] == [sum(x) for x in lengths]
    assert pair_tokens(rows[0]) == 11


# -- the arithmetic and the checks -----------------------------------------------------------


def _args(**over) -> argparse.Namespace:
    base = dict(warmup=2, steps=3, device="cpu", precision="fp32", max_length=64, check_steps=3,
                loss_atol=1e-4, logps_rtol=1e-4)
    return argparse.Namespace(**{**base, **over})


def _raw(times, cumulative, ref_pass_s=0.0, losses=(0.6931, 0.60, 0.50, 0.45, 0.40), hit=None, logps=-100.0):
    return {"status": "ok", "step_times": list(times), "tokens_cumulative": list(cumulative),
            "losses": list(losses), "logps_chosen_step1": logps, "logps_rejected_step1": logps,
            "ref_pass_s": ref_pass_s, "ref_cache_hit": hit, "peak_memory_gib": 1.0, "process_s": 9.0}


STEP_TOKENS = [10, 10, 20, 20, 20]
STEP_ROWS = [[5, 5], [5, 5], [10, 10], [10, 10], [10, 10]]


def test_summary_times_the_steps_after_warmup_and_charges_the_reference_share():
    raw = _raw([1.0, 2.0, 3.0, 4.5, 5.0], [10, 20, 40, 60, 80], ref_pass_s=2.0)
    line = bench.summarise(raw, "trl-precompute", "tiny", "sdpa", _args(), STEP_TOKENS, STEP_ROWS, peak=1.0)
    assert line["status"] == "ok"
    assert line["timed_s"] == 3.0 and line["timed_tokens"] == 60  # steps 3-5: end of step 2 -> end of step 5
    assert line["loop_tokens_per_s"] == 20.0
    assert line["ref_share_s"] == 2.0 * 60 / 80
    assert line["tokens_per_s"] == 60 / 4.5
    shape = bench.SHAPES["tiny"]
    flops = 6 * (bench.row_flops(shape, 10, train=True) + bench.row_flops(shape, 10, train=False))
    assert math.isclose(line["model_tflops_per_s"], flops / 4.5 / 1e12)
    assert line["mfu"] == line["model_tflops_per_s"]  # peak 1 TFLOP/s
    assert line["step_s_median"] == 1.0  # step durations 1.0, 1.5, 0.5


def test_a_warm_cache_is_not_credited_with_reference_flops():
    raw = _raw([1.0, 2.0, 3.0, 4.0, 5.0], [10, 20, 40, 60, 80])
    warm = bench.summarise(raw, "prefkit-cached", "tiny", "sdpa", _args(), STEP_TOKENS, STEP_ROWS, peak=None)
    cold = bench.summarise(raw, "prefkit", "tiny", "sdpa", _args(), STEP_TOKENS, STEP_ROWS, peak=None)
    assert warm["mfu"] is None
    assert cold["model_tflops_per_s"] / warm["model_tflops_per_s"] == pytest.approx(8 / 6, rel=1e-3)


@pytest.mark.parametrize(
    ("times", "cumulative", "message"),
    [
        ([1.0, 2.0, 3.0, 4.0, 5.0], [10, 20, 40, 60, 81], "per-step tokens"),  # one token more: other sequences
        ([1.0, 2.0, 3.0, 4.0], [10, 20, 40, 60, 80], "4 optimizer steps timed"),
    ],
)
def test_a_run_that_saw_other_tokens_or_steps_fails(times, cumulative, message):
    line = bench.summarise(_raw(times, cumulative), "prefkit", "tiny", "sdpa", _args(), STEP_TOKENS, STEP_ROWS, 1.0)
    assert line["status"] == "failed" and message in line["error"]


def _runs(prefkit_losses=(0.6931, 0.60, 0.50), prefkit_logps=-100.0, hit=(False, True)):
    def ok(system, losses, logps=-100.0, cache=None):
        return {"status": "ok", "system": system, "losses": list(losses), "logps_chosen_step1": logps,
                "logps_rejected_step1": logps, "ref_cache_hit": cache, "tokens_per_s": 100.0,
                "peak_memory_gib": 10.0, "mfu": 0.4}

    return {"trl": ok("trl", (0.6931, 0.60, 0.50)), "trl-precompute": ok("trl-precompute", (0.6931, 0.60, 0.50)),
            "prefkit": ok("prefkit", prefkit_losses, prefkit_logps, hit[0]),
            "prefkit-cached": ok("prefkit-cached", prefkit_losses, prefkit_logps, hit[1])}


def test_agreeing_runs_pass_and_ratios_are_reported():
    line = bench.compare(_runs(), "1.5b", "sdpa", _args())
    assert line["checks_passed"], line["problems"]
    assert line["prefkit_vs_trl_tokens_per_s"] == 1.0 and line["prefkit_vs_trl_peak_memory"] == 1.0
    assert line["loss_moved_from_log2"] == pytest.approx(math.log(2) - 0.5)
    assert line["targets"] == {"tokens_per_s_ratio>=2": False, "peak_memory_ratio<=0.6": False, "mfu>=0.35": True}


@pytest.mark.parametrize(
    ("runs", "message"),
    [
        (_runs(prefkit_losses=(0.6931, 0.60, 0.51)), "losses of steps 1-3 differ"),
        (_runs(prefkit_logps=-101.0), "step-1 policy log-probs differ"),
        (_runs(hit=(True, True)), "the reference cache was not empty"),
        (_runs(hit=(False, False)), "the reference cache missed"),
    ],
)
def test_disagreeing_runs_fail_the_check(runs, message):
    line = bench.compare(runs, "tiny", "sdpa", _args())
    assert not line["checks_passed"]
    assert any(message in p for p in line["problems"]), line["problems"]


def test_a_loss_that_does_not_move_makes_the_check_fail():
    flat = (0.69315, 0.69314, 0.69316)
    runs = _runs(prefkit_losses=flat)
    runs["trl"]["losses"] = runs["trl-precompute"]["losses"] = list(flat)
    line = bench.compare(runs, "tiny", "sdpa", _args())
    assert any("cannot tell the systems apart" in p for p in line["problems"])


def test_a_failed_run_is_reported_not_dropped():
    runs = _runs()
    runs["prefkit"] = {"status": "failed", "error": "CUDA out of memory"}
    line = bench.compare(runs, "tiny", "sdpa", _args())
    assert not line["checks_passed"] and any("out of memory" in p for p in line["problems"])
    assert line["prefkit_vs_trl_tokens_per_s"] is None


# -- refusals --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--tiny", "--sizes", "0.5b"], "--tiny runs the tiny model only"),
        (["--sizes", "7b"], "unknown size '7b'"),
        (["--systems", "trl", "prefkit-cached"], "include prefkit"),
        (["--systems", "prefkit"], "include trl"),
        (["--tiny", "--warmup", "0"], "--warmup at least 1"),
    ],
)
def test_bad_arguments_are_refused(argv, message, capsys):
    with pytest.raises(SystemExit):
        bench.parse_args(argv)
    assert message in capsys.readouterr().err


def test_flash_attention_without_flash_attn_is_refused(monkeypatch):
    monkeypatch.setattr(bench, "flash_attention_installed", lambda: False)
    assert bench.resolve_attention(["auto"]) == ["sdpa"]
    with pytest.raises(SystemExit, match="flash-attn is not installed"):
        bench.resolve_attention(["flash_attention_2"])
    monkeypatch.setattr(bench, "flash_attention_installed", lambda: True)
    assert bench.resolve_attention(["auto"]) == ["sdpa", "flash_attention_2"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_the_real_benchmark_refuses_to_run_without_a_gpu():
    proc = subprocess.run([sys.executable, str(SCRIPT), "--sizes", "0.5b"], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode != 0 and "no CUDA device" in proc.stderr


# -- the whole run, tiny -----------------------------------------------------------------------


@pytest.mark.slow
def test_tiny_run_end_to_end(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--tiny", "--peak-tflops", "1", "--out", str(out)],
        capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    printed = [json.loads(x) for x in proc.stdout.splitlines() if x.startswith("{")]
    assert printed == lines
    assert [x["kind"] for x in lines] == ["setup", "run", "run", "run", "run", "comparison"]
    assert lines[0]["versions"]["trl"] == "1.16.0"
    runs = {x["system"]: x for x in lines if x["kind"] == "run"}
    assert list(runs) == list(bench.SYSTEMS)
    for r in runs.values():
        assert r["status"] == "ok" and r["size"] == "tiny" and r["attn"] == "sdpa"
        assert r["tokens_per_s"] > 0 and r["loop_tokens_per_s"] >= r["tokens_per_s"]
        assert r["peak_memory_gib"] > 0 and r["mfu"] == pytest.approx(r["model_tflops_per_s"])
        assert r["losses"][0] == pytest.approx(math.log(2), abs=1e-5)  # policy == reference at step 1
    assert len({r["timed_tokens"] for r in runs.values()}) == 1
    assert runs["trl"]["ref_pass_s"] == 0.0 and runs["trl-precompute"]["ref_pass_s"] > 0
    assert runs["prefkit"]["ref_cache_hit"] is False and runs["prefkit-cached"]["ref_cache_hit"] is True
    comparison = lines[-1]
    assert comparison["checks_passed"], comparison["problems"]
    assert set(comparison["loss_max_abs_diff_vs_trl"]) == {"trl-precompute", "prefkit", "prefkit-cached"}
    assert max(comparison["loss_max_abs_diff_vs_trl"].values()) <= 1e-4
    assert comparison["loss_moved_from_log2"] > 10 * 1e-4
    table = (out / "table.md").read_text()
    assert table in proc.stdout
    assert sum(line.startswith("| tiny | sdpa |") for line in table.splitlines()) == 5
