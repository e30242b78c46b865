"""``prefkit train --method ONLINE_METHOD``: prompts from a world or a file, the judge, errors."""

from __future__ import annotations

import json

import pytest

from prefkit.cli.main import main
from prefkit.data import PromptRecord, write_jsonl
from prefkit.engine.online.methods import ONLINE_METHODS

TINY = ["tiny.hidden_size=16", "tiny.layers=1", "tiny.heads=2", "train.max_length=40", "train.log_every=1",
        "online.prompts_per_step=2", "online.max_new_tokens=6", "eval.prompts=4", "eval.samples=2",
        "eval.max_new_tokens=6", "train.threads=1"]


def test_list_methods_names_every_online_method(capsys):
    assert main(["train", "--list-methods"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    for method in ONLINE_METHODS:
        assert method.name in lines and " online " in lines[method.name]


@pytest.mark.parametrize("method, extra", [("nash_md", []), ("best_of_n", ["online.reward=win_rate"]),
                                           ("ppo", ["online.reward=win_rate", "online.samples_per_prompt=2"])])
def test_train_an_online_method_on_a_world_reports_the_budget(tmp_path, capsys, method, extra):
    out = tmp_path / "run"
    code = main(["train", "--method", method, "--world", "transitive", "--model", "tiny", "--out", str(out),
                 "--json", "train.steps=2", *TINY, *extra])
    assert code == 0
    metrics = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {"queries", "reward_evals", "gen_tokens", "eval/win_rate"} <= set(metrics)
    assert metrics["queries"] > 0
    assert (out / "policy" / "config.json").exists()
    assert (out / "critic" / "value_model.json").exists() == (method == "ppo")


def test_prompts_come_from_a_file_and_the_judge_from_the_world(tmp_path, capsys):
    prompts = tmp_path / "prompts.jsonl"
    write_jsonl([PromptRecord("explain reefs briefly"), PromptRecord("describe planets")], prompts)
    code = main(["train", "--method", "online_dpo", "--data", str(prompts), "--world", "transitive",
                 "--model", "tiny", "--out", str(tmp_path / "run"), "--json", "train.steps=2", *TINY])
    assert code == 0
    metrics = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert metrics["queries"] == 4 and metrics["judge"] == "world:transitive:annotators"


def test_a_world_judge_without_a_world_is_a_clear_error(tmp_path, capsys):
    prompts = tmp_path / "prompts.jsonl"
    write_jsonl([PromptRecord("explain reefs")], prompts)
    code = main(["train", "--method", "online_dpo", "--data", str(prompts), "--model", "tiny",
                 "--out", str(tmp_path / "run"), *TINY])
    assert code == 2
    assert "--world" in capsys.readouterr().err


def test_an_empty_prompt_file_is_a_clear_error(tmp_path, capsys):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("", encoding="utf-8")
    code = main(["train", "--method", "online_dpo", "--data", str(prompts), "--world", "transitive",
                 "--model", "tiny", "--out", str(tmp_path / "run"), *TINY])
    assert code == 2
    assert "empty" in capsys.readouterr().err
