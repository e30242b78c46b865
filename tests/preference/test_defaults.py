"""Preference-model defaults per kind: below the user's YAML and overrides, never over them."""

from __future__ import annotations

import pytest
import torch

from prefkit.config import ConfigError
from prefkit.preference.defaults import FROM_SCRATCH_DEFAULTS, KIND_DEFAULTS, preference_config


@pytest.mark.parametrize("kind", sorted(KIND_DEFAULTS))
def test_no_overrides_gives_the_kinds_defaults(kind, tmp_path):
    cfg = preference_config(None, [f"rm.kind={kind}", f"model={tmp_path}"])
    expected = KIND_DEFAULTS[kind]
    assert cfg.train.lr == expected["train.lr"] and cfg.rm.head_lr == expected["rm.head_lr"]
    assert cfg.train.epochs == expected["train.epochs"] and cfg.train.batch_size == expected["train.batch_size"]
    assert cfg.train.warmup_ratio == expected["train.warmup_ratio"]
    assert cfg.rm.head_lr > 10 * cfg.train.lr  # a new head learns much faster than the backbone
    assert cfg.rm.dim == expected.get("rm.dim", 2)


@pytest.mark.parametrize("kind", sorted(KIND_DEFAULTS))
def test_the_random_tiny_preset_trains_its_backbone_from_scratch(kind):
    cfg = preference_config(None, [f"rm.kind={kind}"])  # model=tiny is the default
    assert cfg.model == "tiny" and cfg.train.lr == FROM_SCRATCH_DEFAULTS["train.lr"]
    assert cfg.train.epochs == FROM_SCRATCH_DEFAULTS["train.epochs"] > KIND_DEFAULTS[kind]["train.epochs"]
    assert cfg.rm.head_lr == KIND_DEFAULTS[kind]["rm.head_lr"]
    assert preference_config(None, [f"rm.kind={kind}", "train.lr=2e-5"]).train.lr == 2e-5


def test_what_the_user_sets_wins_and_steps_replace_epochs(tmp_path):
    cfg = preference_config(None, ["rm.kind=gpm", "train.lr=1e-3", "rm.dim=2"])
    assert cfg.train.lr == 1e-3 and cfg.rm.head_lr == KIND_DEFAULTS["gpm"]["rm.head_lr"] and cfg.rm.dim == 2
    cfg = preference_config(None, ["train.steps=50"])
    assert cfg.train.steps == 50 and cfg.train.epochs is None
    yaml_file = tmp_path / "rm.yaml"
    yaml_file.write_text(f"model: {tmp_path}\nrm:\n  kind: gpm\n  head_lr: 0.5\ntrain:\n  epochs: 7\n")
    cfg = preference_config(yaml_file, [])
    assert cfg.rm.kind == "gpm" and cfg.rm.head_lr == 0.5 and cfg.train.epochs == 7.0
    assert cfg.train.lr == KIND_DEFAULTS["gpm"]["train.lr"]


def test_epochs_and_steps_both_given_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"train\.epochs and train\.steps are both set"):
        preference_config(None, ["train.steps=200", "train.epochs=2"])
    yaml_file = tmp_path / "rm.yaml"
    yaml_file.write_text("train:\n  epochs: 3\n")
    with pytest.raises(ConfigError, match="both set"):
        preference_config(yaml_file, ["train.steps=10"])


def test_the_run_records_the_resolved_length(tmp_path):
    import json

    import yaml

    from prefkit.cli.main import main
    from prefkit.data import PairRecord, write_jsonl

    data = tmp_path / "pairs.jsonl"
    write_jsonl([PairRecord(f"q {i}", f"good {i}", f"bad {i}") for i in range(10)], data)
    assert main(["rm", "train", "--data", str(data), "--out", str(tmp_path / "run"), "tiny.hidden_size=16",
                 "tiny.layers=1", "tiny.heads=2", "train.epochs=2", "train.batch_size=4"]) == 0
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["train"]["steps"] == 5 and saved["train"]["epochs"] is None  # ceil(2 * 10 / 4)
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["steps"] == 5
    assert saved["rm"]["head_lr"] == KIND_DEFAULTS["bt"]["rm.head_lr"]


def test_a_tiny_gpm_run_records_its_defaults_and_keeps_unk_at_zero(tmp_path):
    import yaml

    from prefkit.cli.main import main
    from prefkit.data import PairRecord, write_jsonl
    from prefkit.preference.io import load_preference_model

    data = tmp_path / "pairs.jsonl"
    write_jsonl([PairRecord(f"q {i}", f"good {i}", f"bad {i}") for i in range(8)], data)
    assert main(["rm", "train", "--kind", "gpm", "--data", str(data), "--out", str(tmp_path / "run"),
                 "tiny.hidden_size=16", "tiny.layers=1", "tiny.heads=2", "train.epochs=2",
                 "train.batch_size=4"]) == 0
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["train"]["lr"] == FROM_SCRATCH_DEFAULTS["train.lr"] and saved["rm"]["dim"] == 8
    model = load_preference_model(tmp_path / "run" / "model", device="cpu")
    embeddings = model.backbone.model.get_input_embeddings().weight
    assert torch.count_nonzero(embeddings[model.backbone.tokenizer.unk_token_id]) == 0
    assert torch.count_nonzero(embeddings[model.backbone.tokenizer.convert_tokens_to_ids("good")]) == 16
