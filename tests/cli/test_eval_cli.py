import json

import pytest

from prefkit.cli.main import main
from prefkit.data import write_jsonl
from tests.engine.conftest import make_pairs

TINY = ["tiny.hidden_size=16", "tiny.layers=1", "tiny.heads=2", "train.batch_size=4", "train.max_length=32",
        "train.lr=1e-2", "train.steps=6"]


@pytest.fixture
def trained(tmp_path):
    data = tmp_path / "pairs.jsonl"
    write_jsonl(make_pairs(16), data)
    out = tmp_path / "run"
    assert main(["train", "--method", "dpo", "--data", str(data), "--model", "tiny", "--out", str(out), *TINY]) == 0
    return data, out


def test_eval_on_pairs_reports_implicit_reward_accuracy(trained, capsys):
    data, out = trained
    capsys.readouterr()
    assert main(["eval", "--policy", str(out / "policy"), "--data", str(data), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["n"] == 16 and result["ties"] == 0
    assert result["accuracy"] > 0.5  # trained on these very pairs


def test_eval_accepts_the_run_directory_for_its_policy(trained, capsys):
    data, out = trained
    capsys.readouterr()
    assert main(["eval", "--policy", str(out / "policy"), "--data", str(data), "--json"]) == 0
    via_policy = json.loads(capsys.readouterr().out)
    assert main(["eval", "--policy", str(out), "--data", str(data), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == via_policy


def test_eval_on_a_world_reports_win_rate_and_kl(trained, capsys):
    _, out = trained
    capsys.readouterr()
    assert main(["eval", "--policy", str(out / "policy"), "--world", "transitive", "--json",
                 "eval.prompts=4", "eval.samples=2", "eval.max_new_tokens=4"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert 0 <= result["win_rate"] <= 1 and result["kl"] is not None and result["n_prompts"] == 4


def test_eval_needs_a_reference_it_can_find(tmp_path, capsys):
    from prefkit.config import TinyConfig
    from prefkit.policy import build_tiny_checkpoint

    lonely = build_tiny_checkpoint(tmp_path / "lonely" / "policy", ["a b c"], TinyConfig(hidden_size=16, layers=1, heads=2))
    assert main(["eval", "--policy", str(lonely), "--world", "transitive"]) == 2
    assert "pass --ref DIR" in capsys.readouterr().err
