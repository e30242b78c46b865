"""The ordinal reward model: ordered thresholds, the step loss, learning world ratings, and the
saved-directory round trip (loads in rm eval like any preference model)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from prefkit.data import PairRecord, write_jsonl
from prefkit.losses import ordinal
from prefkit.preference import (
    OrdinalHead,
    ScoringPreferenceModel,
    build_model,
    load_preference_model,
    save_preference_model,
    tiny_backbone,
)
from prefkit.preference.ordinal import ordinal_batch_loss, rating_classes
from tests.preference.conftest import TEXTS, TINY


def test_thresholds_are_strictly_increasing_for_any_parameters():
    head = OrdinalHead(8, levels=6)
    with torch.no_grad():
        head.first.fill_(3.0)
        head.increments.copy_(torch.tensor([-20.0, 5.0, -3.0, 0.0]))
    t = head.thresholds()
    assert t.shape == (5,) and bool((t[1:] > t[:-1]).all())
    assert OrdinalHead(8, levels=2).thresholds().shape == (1,)
    with pytest.raises(ValueError, match="at least 2 levels"):
        OrdinalHead(8, levels=1)


def test_rating_classes():
    assert rating_classes([1, 5, 3], low=1, levels=5).tolist() == [0, 4, 2]
    for bad in ([0], [6], [2.5]):
        with pytest.raises(ValueError, match="row 0"):
            rating_classes(bad, low=1, levels=5)


def _model(levels: int = 5, seed: int = 0):
    torch.manual_seed(seed)
    backbone = tiny_backbone(TEXTS, TINY, seed=seed, max_length=64)
    return build_model("ordinal", backbone, OrdinalHead(backbone.hidden_size, levels=levels))


def test_the_step_loss_is_the_ordinal_loss_of_the_models_scores():
    model = _model()
    rows = model.backbone.prepare(["what is the sky", "tell me a joke"], ["the sky is blue", "no joke"])
    labels = torch.tensor([4, 0])
    loss, metrics = ordinal_batch_loss(model, model.backbone.collate(rows), labels)
    scores = model.embed_train(model.backbone.collate(rows))[:, 0]
    torch.testing.assert_close(loss, ordinal(scores, model.head.thresholds(), labels))
    assert set(metrics) == {"ordinal/accuracy", "ordinal/mae", "ordinal/score"}
    loss.mean().backward()
    assert model.head.first.grad is not None and model.head.linear.weight.grad is not None


def test_a_few_steps_learn_world_ratings_better_than_chance():
    from prefkit.sim import make_world
    from prefkit.sim.ratings import rated_lists

    world = make_world("transitive", seed=0)
    rows = rated_lists(world, 96, 4, np.random.default_rng(0), levels=5, pool="exact")
    prompts = [r.prompt for r in rows for _ in r.completions]
    texts = [c for r in rows for c in r.completions]
    labels = rating_classes([v for r in rows for v in r.ratings], low=1, levels=5)
    torch.manual_seed(0)
    backbone = tiny_backbone(world.vocabulary() + prompts, TINY, seed=0, max_length=32)
    model = build_model("ordinal", backbone, OrdinalHead(backbone.hidden_size, levels=5))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    batch = backbone.collate(backbone.prepare(prompts, texts))
    first = None
    for _ in range(60):
        optimizer.zero_grad()
        loss, _ = ordinal_batch_loss(model, batch, labels)
        loss.mean().backward()
        optimizer.step()
        first = float(loss.detach().mean()) if first is None else first
    assert float(loss.detach().mean()) < first - 0.2
    expected = model.expected_rating(prompts, texts)
    correlation = np.corrcoef(expected.numpy(), labels.numpy())[0, 1]
    assert correlation > 0.5


def test_saved_ordinal_models_load_and_evaluate_like_any_preference_model(tmp_path, capsys):
    from prefkit.cli.main import main

    model = _model(levels=4)
    with torch.no_grad():
        model.head.increments.add_(0.3)
    saved = save_preference_model(model, tmp_path / "ordinal")
    manifest = json.loads((saved / "preference_model.json").read_text())
    assert manifest["kind"] == "ordinal" and manifest["levels"] == 4
    loaded = load_preference_model(saved, device="cpu")
    assert isinstance(loaded, ScoringPreferenceModel) and loaded.kind == "ordinal"
    prompts, responses = ["what is the sky"] * 2, ["the sky is blue", "the sky is green"]
    torch.testing.assert_close(loaded.class_probabilities(prompts, responses),
                               model.class_probabilities(prompts, responses))
    data = write_jsonl([PairRecord("what is the sky", "the sky is blue", "the sky is green")], tmp_path / "p.jsonl")
    assert main(["rm", "eval", "--model", str(saved), "--data", str(data), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["kind"] == "ordinal"


def test_rm_kind_ordinal_is_refused_until_the_engine_trains_it():
    from prefkit.config import ConfigError, RunConfig, load

    with pytest.raises(ConfigError, match=r"rm\.kind"):
        load(RunConfig, None, ["rm.kind=ordinal"])
