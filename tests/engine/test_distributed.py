"""Several processes through accelerate (CPU, gloo): N processes at one global batch give one
process's result; only the main process writes; kill -9 of the job and ``--resume`` give the
uninterrupted run; launches the driver cannot honour stop before training."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from prefkit.data import write_jsonl

from .conftest import make_pairs

pytestmark = pytest.mark.slow

TINY = ["tiny.hidden_size=16", "tiny.layers=1", "tiny.heads=2", "train.max_length=32", "train.log_every=1",
        "train.lr=3e-3", "train.threads=1", "train.batch_size=8"]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


def _launch(processes: int, args: list[str]) -> list[str]:
    if processes == 1:
        return [sys.executable, "-m", "prefkit", *args]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
            "-m", "prefkit", *args]


def _run(processes: int, args: list[str], *, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(_launch(processes, args), env=_env(), capture_output=True, text=True, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def _rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def _weights(out: Path) -> dict[str, torch.Tensor]:
    return load_file(out / "policy" / "model.safetensors")


@pytest.fixture(scope="module")
def pairs(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "pairs.jsonl"
    write_jsonl(make_pairs(40), path)
    return path


def _train(method: str, pairs: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "--method", method, "--data", str(pairs), "--model", "tiny", "--out", str(out), *TINY, *extra]


@pytest.fixture(scope="module")
def two_process_dpo(pairs, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("two") / "run"
    _run(2, _train("dpo", pairs, out, "train.steps=6", "train.save_every=2"))
    return out


def test_two_processes_give_one_process_losses_and_weights(pairs, two_process_dpo, tmp_path):
    one = tmp_path / "one"
    _run(1, _train("dpo", pairs, one, "train.steps=6", "train.save_every=2", "train.grad_accum=2"))
    a, b = _rows(one), _rows(two_process_dpo)
    assert [r["step"] for r in b] == [1, 2, 3, 4, 5, 6]  # one row per step: only the main process logs
    for key in ("loss", "rewards/margins", "logps/chosen", "grad_norm"):
        assert [r[key] for r in a] == pytest.approx([r[key] for r in b], rel=1e-5, abs=1e-5), key
    wa, wb = _weights(one), _weights(two_process_dpo)
    assert wa.keys() == wb.keys()
    for name in wa:
        torch.testing.assert_close(wa[name], wb[name], rtol=1e-5, atol=1e-5, msg=name)
    summary = json.loads((two_process_dpo / "metrics.json").read_text())
    assert summary["processes"] == 2 and summary["tokens"] == json.loads((one / "metrics.json").read_text())["tokens"]
    state = json.loads((two_process_dpo / "checkpoints" / "step-00000006" / "state.json").read_text())
    assert state["world_size"] == 2
    assert sorted(p.name for p in (two_process_dpo / "checkpoints" / "step-00000006").glob("rank-*")) == [
        "rank-0.json", "rank-0.safetensors", "rank-1.json", "rank-1.safetensors"]


@pytest.mark.parametrize("kind", ["sft", "rm"])
def test_sft_and_reward_models_match_across_process_counts(pairs, tmp_path, kind):
    def command(out: Path, *extra: str) -> list[str]:
        if kind == "sft":
            return _train("sft", pairs, out, "train.steps=4", *extra)
        return ["rm", "train", "--kind", "bt", "--data", str(pairs), "--model", "tiny", "--out", str(out), *TINY,
                "train.steps=4", "rm.dropout=0", *extra]

    _run(1, command(tmp_path / "one", "train.grad_accum=2"))
    _run(2, command(tmp_path / "two", *(["train.packing=true"] if kind == "sft" else [])))  # packed = padded too
    a, b = _rows(tmp_path / "one"), _rows(tmp_path / "two")
    assert len(b) == 4
    assert [r["loss"] for r in a] == pytest.approx([r["loss"] for r in b], rel=1e-5, abs=1e-6)


def test_kto_matches_across_process_counts(pairs, tmp_path):
    """KTO's reference point is the mean over the global micro-batch (each rank's share
    all-reduced, as TRL gathers it), so 2 processes give 1 process's losses."""
    _run(1, _train("kto", pairs, tmp_path / "one", "train.steps=3", "data.unpair=true"))
    _run(2, _train("kto", pairs, tmp_path / "two", "train.steps=3", "data.unpair=true"))
    a, b = _rows(tmp_path / "one"), _rows(tmp_path / "two")
    for key in ("loss", "kl", "rewards/chosen"):
        assert [r[key] for r in a] == pytest.approx([r[key] for r in b], rel=1e-5, abs=1e-6), key


def test_kill_9_of_the_whole_job_and_resume_give_the_uninterrupted_run(pairs, two_process_dpo, tmp_path):
    out = tmp_path / "run"
    args = _train("dpo", pairs, out, "train.steps=6", "train.save_every=2")
    job = subprocess.Popen(_launch(2, args), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           start_new_session=True)
    latest = out / "checkpoints" / "latest"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and job.poll() is None:
        named = latest.read_text().strip() if latest.exists() else ""
        if named in ("step-00000002", "step-00000004"):  # steps left to kill in (checkpoints are ~50 ms apart)
            os.killpg(job.pid, signal.SIGSTOP)
            break
        time.sleep(0.005)
    os.killpg(job.pid, signal.SIGKILL)
    job.wait()
    assert not (out / "policy").exists(), "the job finished before it could be killed"
    _run(2, [*args, "--resume"])
    for key in ("loss", "grad_norm", "rewards/accuracies"):
        assert [r[key] for r in _rows(out)] == [r[key] for r in _rows(two_process_dpo)], key
    wa, wb = _weights(out), _weights(two_process_dpo)
    for name in wa:
        assert torch.equal(wa[name], wb[name]), name


def test_resume_with_another_world_size_is_refused(pairs, two_process_dpo, tmp_path):
    proc = _run(1, [*_train("dpo", pairs, two_process_dpo, "train.steps=8", "train.save_every=2"), "--resume"],
                check=False)
    assert proc.returncode == 2
    assert "written by 2 process(es) and this run has 1" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_global_batch_that_does_not_split_over_the_processes_stops_before_training(pairs, tmp_path):
    proc = _run(2, _train("dpo", pairs, tmp_path / "run", "train.steps=2", "train.batch_size=7"), check=False)
    assert proc.returncode != 0
    assert "train.batch_size=7 must be divisible by the number of processes (2)" in proc.stderr
    assert not (tmp_path / "run" / "checkpoints").exists() and not (tmp_path / "run" / "metrics.jsonl").exists()


def test_a_rank_that_dies_takes_the_job_down(pairs, tmp_path):
    out = tmp_path / "run"
    job = subprocess.Popen(_launch(2, _train("dpo", pairs, out, "train.steps=100000", "train.save_every=0")),
                           env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not (out / "metrics.jsonl").exists():
            time.sleep(0.1)
        time.sleep(1.0)
        children = subprocess.run(["pgrep", "-P", str(job.pid)], capture_output=True, text=True).stdout.split()
        assert len(children) == 2, children
        os.kill(int(children[-1]), signal.SIGKILL)
        assert job.wait(timeout=120) != 0
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)


def test_online_methods_sample_on_every_rank_under_accelerate_launch(tmp_path):
    out = tmp_path / "run"
    config = Path(__file__).parents[2] / "configs" / "accelerate" / "ddp.yaml"
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config), "-m", "prefkit",
               "train", "--method", "online_dpo", "--world", "transitive", "--model", "tiny", "--out", str(out),
               *TINY, "train.steps=2", "online.prompts_per_step=4", "online.max_new_tokens=4", "eval.prompts=4",
               "eval.samples=2"]
    proc = subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["processes"] == 2 and summary["queries"] <= 2 * 4 and summary["queries"] > 0
    assert summary["rows"] > 0 and "eval/win_rate" in summary
    assert [r["step"] for r in _rows(out) if "loss" in r] == [1, 2]


def test_ppo_trains_policy_and_critic_on_every_rank_under_accelerate_launch(tmp_path):
    """PPO under two processes: the critic is part of the data-parallel module, the rollout's
    advantages are whitened over both ranks' rows, and the main process saves policy and critic."""
    out = tmp_path / "run"
    config = Path(__file__).parents[2] / "configs" / "accelerate" / "ddp.yaml"
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config), "-m", "prefkit",
               "train", "--method", "ppo", "--world", "transitive", "--model", "tiny", "--out", str(out),
               *TINY, "train.steps=2", "online.prompts_per_step=4", "online.max_new_tokens=4", "eval.prompts=4",
               "eval.samples=2", "online.reward=win_rate", "online.samples_per_prompt=2"]
    proc = subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["processes"] == 2 and summary["samples"] == 2 * 4 * 2
    assert (out / "critic" / "value_head.safetensors").is_file() and (out / "policy" / "config.json").is_file()
    assert all("value_loss" in r for r in _rows(out) if "loss" in r)


def test_commands_that_run_in_one_process_refuse_a_multi_process_launch(monkeypatch, capsys):
    from prefkit.cli.main import main

    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["games", "--preset", "rps", "--method", "egpo"]) == 2
    assert "runs in one process, but it was launched with 2" in capsys.readouterr().err
