import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from prefkit.cli.main import main
from prefkit.data import write_jsonl
from tests.engine.conftest import make_pairs

TINY = [
    "tiny.hidden_size=16",
    "tiny.layers=1",
    "tiny.heads=2",
    "train.batch_size=4",
    "train.max_length=32",
    "train.lr=1e-2",
    "train.log_every=1",
    "train.threads=1",
]


@pytest.fixture
def pairs_file(tmp_path):
    path = tmp_path / "pairs.jsonl"
    write_jsonl(make_pairs(16), path)
    return path


def test_train_json_reports_the_contract_metrics(pairs_file, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", "--method", "dpo", "--data", str(pairs_file), "--model", "tiny", "--out", str(out),
                 "--json", "train.steps=3", "loss.beta=0.2", "seed=1", *TINY])
    assert code == 0
    metrics = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {"tokens_per_s", "steps", "wall_s", "final_loss"} <= set(metrics)
    assert metrics["steps"] == 3
    saved = (out / "config.yaml").read_text()
    assert "beta: 0.2" in saved and "seed: 1" in saved


def test_train_rejects_a_misspelt_override(pairs_file, tmp_path, capsys):
    code = main(["train", "--method", "dpo", "--data", str(pairs_file), "--model", "tiny",
                 "--out", str(tmp_path / "r"), "train.stpes=3"])
    assert code == 2
    assert "did you mean 'steps'" in capsys.readouterr().err


def test_list_methods_names_offline_and_sft(capsys):
    assert main(["train", "--list-methods"]) == 0
    listed = {line.split()[0] for line in capsys.readouterr().out.splitlines()}
    assert {"dpo", "ipo", "simpo", "lipo_lambda", "adpo", "sft", "cdpo"} <= listed


def _command(pairs_file: Path, out: Path, steps: int) -> list[str]:
    return [sys.executable, "-m", "prefkit", "train", "--method", "dpo", "--data", str(pairs_file),
            "--model", "tiny", "--out", str(out), f"train.steps={steps}", "train.save_every=5", *TINY]


def _losses(out: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_sigkill_then_resume_matches_an_uninterrupted_run(pairs_file, tmp_path):
    steps = 80
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    full = tmp_path / "full"
    subprocess.run(_command(pairs_file, full, steps), check=True, env=env, capture_output=True)

    killed = tmp_path / "killed"
    proc = subprocess.Popen(_command(pairs_file, killed, steps), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    latest = killed / "checkpoints" / "latest"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if latest.exists() and latest.read_text().strip() >= "step-00000010":
            break
        time.sleep(0.01)
    assert proc.poll() is None, "the run finished before it could be killed; raise the step count"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (killed / "metrics.json").exists()

    subprocess.run([*_command(pairs_file, killed, steps), "--resume"], check=True, env=env, capture_output=True)
    assert _losses(killed) == pytest.approx(_losses(full), rel=1e-6, abs=1e-7)
    final = json.loads((killed / "metrics.json").read_text())
    reference = json.loads((full / "metrics.json").read_text())
    assert final["final_loss"] == pytest.approx(reference["final_loss"], rel=1e-6)
    assert final["tokens"] == reference["tokens"]
