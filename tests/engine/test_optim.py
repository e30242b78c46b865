"""Learning-rate groups, warm-up ratio and the epoch-based length (issue 10, item 10)."""

from __future__ import annotations

import pytest
import torch

from prefkit.config import TrainConfig
from prefkit.engine.optim import build_optimizer, lr_factor, set_lr, warmup_steps


def named():
    backbone, head = torch.nn.Linear(3, 3), torch.nn.Linear(3, 1, bias=False)
    return [("backbone.weight", backbone.weight), ("backbone.bias", backbone.bias), ("head.weight", head.weight)]


def test_each_parameter_gets_its_learning_rate_scale_and_the_schedule_scales_all():
    cfg = TrainConfig(lr=1e-3, steps=10, warmup_steps=4, weight_decay=0.1)
    optimizer = build_optimizer(named(), cfg, lambda name: 10.0 if name.startswith("head.") else 1.0)
    groups = {(g["lr_scale"], g["weight_decay"]): len(g["params"]) for g in optimizer.param_groups}
    assert groups == {(1.0, 0.1): 1, (1.0, 0.0): 1, (10.0, 0.1): 1}
    assert set_lr(optimizer, 1, cfg) == pytest.approx(1e-3 * 2 / 4)
    assert sorted(g["lr"] for g in optimizer.param_groups) == pytest.approx([5e-4, 5e-4, 5e-3])


def test_one_learning_rate_keeps_the_two_decay_groups_in_order():
    cfg = TrainConfig(lr=1e-3, weight_decay=0.1)
    optimizer = build_optimizer(named(), cfg)
    assert [(g["weight_decay"], len(g["params"])) for g in optimizer.param_groups] == [(0.1, 2), (0.0, 1)]


def test_warmup_ratio_is_a_fraction_of_the_steps():
    cfg = TrainConfig(steps=50, warmup_ratio=0.1)
    assert warmup_steps(cfg) == 5
    assert [lr_factor(s, cfg) for s in (0, 4, 5)] == pytest.approx([0.2, 1.0, 1.0])
    with pytest.raises(ValueError, match=r"warmup_steps and train\.warmup_ratio"):
        TrainConfig(warmup_steps=3, warmup_ratio=0.1)
    with pytest.raises(ValueError, match="warmup_ratio"):
        TrainConfig(warmup_ratio=1.0)


def test_epochs_set_the_steps_and_contradict_an_explicit_step_count():
    cfg = TrainConfig(epochs=2.5, batch_size=8)
    assert cfg.steps_for(100).steps == 32 and cfg.steps_for(100).epochs is None  # ceil(2.5 * 100 / 8)
    assert TrainConfig(steps=7).steps_for(100).steps == 7
    with pytest.raises(ValueError, match=r"train.epochs \(2.0\) and train.steps \(50\) are both set"):
        TrainConfig(epochs=2.0, steps=50)
    with pytest.raises(ValueError, match=r"train\.epochs must be positive"):
        TrainConfig(epochs=0.0)


def test_policy_runs_honour_epochs_and_online_runs_refuse_them(tmp_path, capsys):
    import json

    from prefkit.cli.main import main
    from prefkit.data import write_jsonl
    from tests.engine.conftest import make_pairs

    data = tmp_path / "pairs.jsonl"
    write_jsonl(make_pairs(10), data)
    tiny = ["tiny.hidden_size=16", "tiny.layers=1", "tiny.heads=2", "train.batch_size=4", "train.max_length=32"]
    assert main(["train", "--method", "dpo", "--data", str(data), "--model", "tiny", "--out", str(tmp_path / "a"),
                 *tiny, "train.epochs=1.5"]) == 0
    assert json.loads((tmp_path / "a" / "metrics.json").read_text())["steps"] == 4  # ceil(1.5 * 10 / 4)
    assert main(["train", "--method", "online_dpo", "--world", "transitive", "--model", "tiny", "--out",
                 str(tmp_path / "b"), *tiny, "train.epochs=1"]) == 2
    assert "train.epochs" in capsys.readouterr().err
