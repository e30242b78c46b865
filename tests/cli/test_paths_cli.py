"""Saved configs hold absolute paths: a run works from any directory (issue 10, item 9)."""

from __future__ import annotations

import json

import yaml

from prefkit.cli.main import main
from prefkit.data import write_jsonl
from tests.engine.conftest import make_pairs

TINY = ["tiny.hidden_size=16", "tiny.layers=1", "tiny.heads=2", "train.batch_size=4", "train.max_length=32",
        "train.lr=1e-2"]


def test_runs_given_relative_paths_work_from_another_directory(tmp_path, monkeypatch, capsys):
    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    work.mkdir(), elsewhere.mkdir()
    monkeypatch.chdir(work)
    write_jsonl(make_pairs(8), work / "pairs.jsonl")
    assert main(["train", "--method", "sft", "--data", "pairs.jsonl", "--model", "tiny", "--out", "base",
                 *TINY, "train.steps=2"]) == 0
    # a second run from the first one's policy, every path relative to work/
    assert main(["train", "--method", "dpo", "--data", "pairs.jsonl", "--model", "base/policy", "--out", "dpo",
                 *TINY, "train.steps=2", "train.save_every=1"]) == 0
    saved = yaml.safe_load((work / "dpo" / "config.yaml").read_text())
    assert saved["model"] == str(work / "base" / "policy")
    assert saved["data"]["path"] == str(work / "pairs.jsonl") and saved["out"] == str(work / "dpo")

    monkeypatch.chdir(elsewhere)
    capsys.readouterr()
    # prefkit eval finds the run's reference (its initial model) through config.yaml
    assert main(["eval", "--policy", str(work / "dpo"), "--data", str(work / "pairs.jsonl"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n"] == 8
    # --resume from another directory, with the same (now absolute) paths: same configuration
    assert main(["train", "--method", "dpo", "--data", str(work / "pairs.jsonl"), "--model",
                 str(work / "base" / "policy"), "--out", str(work / "dpo"), *TINY, "train.steps=3",
                 "train.save_every=1", "--resume"]) == 0
    assert json.loads((work / "dpo" / "metrics.json").read_text())["steps"] == 3
    # --model RUN/policy from another directory
    assert main(["train", "--method", "dpo", "--data", str(work / "pairs.jsonl"), "--model",
                 str(work / "dpo" / "policy"), "--out", "again", *TINY, "train.steps=1"]) == 0
    assert (elsewhere / "again" / "policy" / "config.json").is_file()


def test_names_that_are_not_local_paths_are_kept(tmp_path, monkeypatch):
    from prefkit.config import RunConfig, load

    monkeypatch.chdir(tmp_path)
    cfg = load(RunConfig, None, ["model=org/some-model", "data.path=org/some-dataset", "online.judge=world",
                                 "online.judge=llm:missing-dir", "out=runs/x"])
    assert cfg.model == "org/some-model" and cfg.data.path == "org/some-dataset"
    assert cfg.online.judge == "llm:missing-dir" and cfg.out == str(tmp_path / "runs" / "x")
    (tmp_path / "judge").mkdir()
    cfg = load(RunConfig, None, ["online.judge=llm:judge", "model=tiny"])
    assert cfg.online.judge == f"llm:{tmp_path / 'judge'}" and cfg.model == "tiny"
