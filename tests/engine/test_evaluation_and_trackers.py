"""Held-out evaluation while training (``data.eval_path``, TRL's metric names) and experiment
trackers (``train.report_to``)."""

from __future__ import annotations

import json

import pytest

from prefkit.data import write_jsonl
from prefkit.engine import TrainData, train
from prefkit.errors import InputError

from .conftest import make_pairs, tiny_config


def _rows(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("method", ["dpo", "sft"])
def test_held_out_metrics_every_eval_every_steps_and_at_the_end(tmp_path, method):
    held_out = write_jsonl(make_pairs(6, seed=3), tmp_path / "eval.jsonl")
    cfg = tiny_config(tmp_path, method, f"data.eval_path={held_out}", "train.eval_every=2", "train.steps=4")
    result = train(cfg, data=TrainData(pairs=make_pairs(8)), progress=False)
    evals = [r for r in _rows(tmp_path / "run") if "eval/loss" in r]
    assert [r["step"] for r in evals] == [2, 4]
    names = {"eval/loss", "eval/logps/chosen"}
    if method == "dpo":
        names |= {"eval/rewards/accuracies", "eval/rewards/margins", "eval/logps/rejected", "eval/rewards/chosen"}
    assert names <= set(evals[-1])
    summary = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert summary["eval/loss"] == pytest.approx(evals[-1]["eval/loss"]) and summary["eval_examples"] == 6
    assert result.metrics["eval/loss"] == summary["eval/loss"]
    if method == "dpo":
        assert 0.0 <= evals[-1]["eval/rewards/accuracies"] <= 1.0


def test_held_out_loss_is_the_training_loss_on_the_same_data(tmp_path):
    pairs = make_pairs(8)
    same = write_jsonl(pairs, tmp_path / "same.jsonl")
    cfg = tiny_config(tmp_path, "dpo", f"data.eval_path={same}", "train.steps=1", "train.batch_size=8",
                      "train.lr=1e-9", "train.shuffle=false")
    train(cfg, data=TrainData(pairs=pairs), progress=False)
    row = _rows(tmp_path / "run")
    assert row[1]["eval/loss"] == pytest.approx(row[0]["loss"], abs=1e-5)  # lr ~ 0: the same weights


def test_tensorboard_tracker_logs_the_metrics(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = tiny_config(tmp_path, "dpo", "train.report_to=tensorboard")
    train(cfg, data=TrainData(pairs=make_pairs(8)), progress=False)
    logs = list((tmp_path / "run" / "tensorboard").rglob("events.out.tfevents.*"))
    assert logs
    events = EventAccumulator(str(logs[0].parent))
    events.Reload()
    assert {"loss", "rewards/margins", "lr"} <= set(events.Tags()["scalars"])
    assert [e.step for e in events.Scalars("loss")] == [1, 2, 3, 4]


def test_unknown_or_missing_trackers_are_refused_before_training(tmp_path, monkeypatch):
    import importlib.util

    with pytest.raises(InputError, match=r"\[train\.report_to\].*unknown tracker 'comet'"):
        train(tiny_config(tmp_path, "dpo", "train.report_to=comet"), data=TrainData(pairs=make_pairs(8)),
              progress=False)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    with pytest.raises(InputError, match=r"wandb needs the wandb library: pip install 'prefkit\[wandb\]'"):
        train(tiny_config(tmp_path, "dpo", "train.report_to=[tensorboard, wandb]"), data=TrainData(pairs=make_pairs(8)),
              progress=False)
    assert not (tmp_path / "run").exists()
