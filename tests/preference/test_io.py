"""The saved preference-model directory: round trips, the manifest contract, bad directories."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from prefkit.errors import InputError
from prefkit.preference import load_preference_model, save_preference_model
from prefkit.preference.io import MANIFEST, read_manifest, resolve_model_dir
from tests.preference.conftest import make_model

PROMPTS = ["what is the sky", "tell me a joke"]
A = ["the sky is blue", "a funny joke"]
B = ["the sky is green", "no joke"]


@pytest.mark.parametrize(("kind", "head"), [("bt", {}), ("gpm", {"dim": 6, "eigenvalues": "prompt", "tau": 0.3,
                                                                  "normalize": True}), ("pairpm", {})])
def test_round_trip_gives_the_same_answers(tmp_path, kind, head):
    model = make_model(kind, seed=2, dropout=0.1, **head)
    with torch.no_grad():
        model.head.linear.weight.mul_(10)
    before = model.prob(PROMPTS, A, B)
    save_preference_model(model, tmp_path / "pm", extra={"pairs": 3})
    loaded = load_preference_model(tmp_path / "pm", device="cpu")
    assert type(loaded) is type(model)
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
    torch.testing.assert_close(loaded.prob(PROMPTS, A, B), before)
    manifest = json.loads((tmp_path / "pm" / MANIFEST).read_text())
    assert manifest["kind"] == kind and manifest["backbone"] == "causal" and manifest["pooling"] == "last"
    assert manifest["trained"] == {"pairs": 3} and manifest["dropout"] == 0.1
    if kind == "gpm":
        assert (manifest["dim"], manifest["eigenvalues"], manifest["tau"], manifest["normalize"]) == (6, "prompt", 0.3,
                                                                                                       True)
    assert set(load_file(tmp_path / "pm" / "head.safetensors")) == set(model.head.state_dict())


def test_backbone_files_load_with_plain_transformers(tmp_path):
    from transformers import AutoModel, AutoTokenizer

    model = make_model("bt")
    save_preference_model(model, tmp_path / "pm")
    base = AutoModel.from_pretrained(tmp_path / "pm")
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "pm")
    assert type(base).__name__ == "LlamaModel" and tokenizer.eos_token == "</s>"
    torch.testing.assert_close(base.embed_tokens.weight, model.backbone.model.embed_tokens.weight)


def test_a_run_directory_resolves_to_its_model(tmp_path):
    save_preference_model(make_model("bt"), tmp_path / "run" / "model")
    assert resolve_model_dir(tmp_path / "run") == tmp_path / "run" / "model"
    assert read_manifest(tmp_path / "run")["kind"] == "bt"


def test_bad_directories_are_clear_errors(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_preference_model(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="rm train"):
        load_preference_model(tmp_path / "empty")
    save_preference_model(make_model("gpm", dim=2), tmp_path / "pm")
    manifest = json.loads((tmp_path / "pm" / MANIFEST).read_text())
    (tmp_path / "pm" / MANIFEST).write_text(json.dumps({**manifest, "version": 99}))
    with pytest.raises(InputError, match="version 99"):
        load_preference_model(tmp_path / "pm")
    (tmp_path / "pm" / MANIFEST).write_text(json.dumps({**manifest, "dim": 4}))
    with pytest.raises(InputError, match="do not match"):
        load_preference_model(tmp_path / "pm")
    (tmp_path / "pm" / MANIFEST).write_text(json.dumps(manifest))
    (tmp_path / "pm" / "head.safetensors").unlink()
    with pytest.raises(InputError, match="missing head"):
        load_preference_model(tmp_path / "pm")
    (tmp_path / "pm" / MANIFEST).write_text("{not json")
    with pytest.raises(InputError, match="cannot read"):
        load_preference_model(tmp_path / "pm")


def test_saving_replaces_an_existing_model_atomically(tmp_path):
    save_preference_model(make_model("bt", seed=0), tmp_path / "pm")
    second = make_model("bt", seed=1)
    save_preference_model(second, tmp_path / "pm")
    torch.testing.assert_close(load_preference_model(tmp_path / "pm", device="cpu").prob(PROMPTS, A, B),
                               second.prob(PROMPTS, A, B))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pm"]
