"""The ordinal reward model through the engine: the step's loss against the registry loss by hand,
learning graded labels, save/load, a scalar judge, exact resume, bad input with file:line:field."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import prefkit
from prefkit.config import ConfigError, RunConfig, load
from prefkit.data import read_pairs, read_prompts
from prefkit.data.ratings import RatingRecord, RatingsRecord
from prefkit.engine.online.judge import OnlineJudge
from prefkit.engine.preference.kinds import KIND_RUNS, register_kind_run
from prefkit.engine.preference.ordinal import (
    OrdinalShape,
    rating_data,
    train_ordinal_model,
    within_list_pairs,
)
from prefkit.engine.preference.train import build_preference_model, train_preference_model
from prefkit.engine.run import MicroBatch, RunSession
from prefkit.errors import InputError
from prefkit.losses import ordinal
from prefkit.preference import load_preference_model
from prefkit.preference.ordinal import OrdinalRewardModel

GOOD = ["alpha", "beta", "gamma"]
BAD = ["kappa", "lambda", "mu"]


def ratings(n: int, seed: int = 0, k: int = 3) -> list[RatingsRecord]:
    """Rated lists where the rating (1..3) is the number of good words in the completion."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        completions, values = [], []
        for _ in range(k):
            good = int(rng.integers(0, 3))
            words = list(rng.choice(GOOD, size=good)) + list(rng.choice(BAD, size=2 - good + 1))
            rng.shuffle(words)
            completions.append(" ".join(words))
            values.append(float(1 + good))
        out.append(RatingsRecord(f"topic {i % 4}", completions, values, source=("mem.jsonl", i + 1)))
    return out


def _cfg(tmp_path, *overrides: str) -> RunConfig:
    return load(RunConfig, None, [f"out={tmp_path / 'run'}", "rm.kind=ordinal", "rm.scale=1-3", "rm.dropout=0.0",
                                  "tiny.hidden_size=16", "tiny.layers=1", "tiny.heads=2", "train.max_length=32",
                                  "train.steps=40", "train.batch_size=12", "train.lr=3e-3", "train.log_every=1000",
                                  *overrides])


def _write(path, rows) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def test_the_step_loss_is_the_sum_of_the_registry_ordinal_loss(tmp_path):
    cfg = _cfg(tmp_path, "rm.ordinal_variant=nested")
    records = ratings(4)
    session = RunSession.start(cfg)
    try:
        model = build_preference_model(cfg, [], session.device, texts=[w for r in records for w in r.completions]
                                       + [r.prompt for r in records])
        assert isinstance(model, OrdinalRewardModel) and model.head.levels == 3
        data = rating_data(model.backbone, records, low=1, levels=3)
        assert data.labels.tolist() == [int(v) - 1 for r in records for v in r.ratings]
        shape = OrdinalShape(session, model, data, variant="nested", label="rm:ordinal")
        out = shape.loss(model, MicroBatch(12, list(range(12))))
        scores = model.score(data.prompts, data.completions)
        by_hand = ordinal(scores, model.head.thresholds().detach(), data.labels, variant="nested").sum()
        torch.testing.assert_close(out.loss.detach(), by_hand, rtol=1e-5, atol=1e-5)
        assert out.loss.requires_grad
    finally:
        session.close()


def test_within_list_pairs_are_every_differently_rated_pair_of_one_list():
    data = type("D", (), {})()
    data.group, data.labels = [0, 0, 0, 1, 1], torch.tensor([2, 0, 2, 1, 1])
    better, worse = within_list_pairs(data)
    assert sorted(zip(better.tolist(), worse.tolist())) == [(0, 1), (2, 1)]


def test_train_learns_graded_labels_saves_and_is_a_scalar_judge(tmp_path):
    train_path = _write(tmp_path / "train.jsonl", [r.to_json() for r in ratings(48)])
    eval_path = _write(tmp_path / "eval.jsonl", [r.to_json() for r in ratings(16, seed=1)])
    cfg = _cfg(tmp_path, f"data.path={train_path}", f"data.eval_path={eval_path}")
    result = train_preference_model(cfg)
    m = result.metrics
    assert m["kind"] == "ordinal" and m["levels"] == 3 and m["rated_completions"] == 144
    assert m["eval/pair_accuracy"] > 0.8, m
    assert m["eval/ordinal/accuracy"] > 0.5, m
    saved = json.loads((tmp_path / "run" / "model" / "preference_model.json").read_text())
    assert saved["kind"] == "ordinal" and saved["levels"] == 3 and saved["trained"]["scale"] == [1, 3]
    loaded = load_preference_model(tmp_path / "run", device="cpu")
    assert isinstance(loaded, OrdinalRewardModel)
    prompts, good, bad = ["topic 0"], ["alpha beta gamma"], ["kappa lambda mu"]
    torch.testing.assert_close(loaded.score(prompts, good), result.model.score(prompts, good))
    judge = OnlineJudge(loaded)
    assert judge.has_scalar_reward and judge.uses_reward_model()
    r = judge.rewards(prompts, [good + bad])[0]
    assert r[0] > r[1] and judge.reward_evals == 2
    assert float(loaded.prob(prompts, good, bad)[0]) > 0.5
    dynamics = (tmp_path / "run" / "training_dynamics.jsonl").read_text().splitlines()
    assert len(dynamics) == 144 and json.loads(dynamics[0])["field"] == "completions[0]"


def test_single_ratings_train_too(tmp_path):
    rows = [RatingRecord(r.prompt, c, v, source=("mem.jsonl", i)).to_json()
            for i, r in enumerate(ratings(12)) for c, v in zip(r.completions, r.ratings)]
    path = _write(tmp_path / "single.jsonl", rows)
    result = train_preference_model(_cfg(tmp_path, f"data.path={path}", "train.steps=2"))
    assert result.metrics["rated_completions"] == 36


def test_resume_continues_exactly(tmp_path):
    path = _write(tmp_path / "train.jsonl", [r.to_json() for r in ratings(16)])
    straight = train_ordinal_model(_cfg(tmp_path / "a", f"data.path={path}", "train.steps=4"))
    train_ordinal_model(_cfg(tmp_path / "b", f"data.path={path}", "train.steps=2"))
    resumed = train_ordinal_model(_cfg(tmp_path / "b", f"data.path={path}", "train.steps=4"), resume=True)
    for a, b in zip(straight.model.parameters(), resumed.model.parameters()):
        torch.testing.assert_close(a, b)


def test_a_rating_off_the_scale_names_file_line_and_field(tmp_path):
    rows = [r.to_json() for r in ratings(6)]
    rows[3]["ratings"][1] = 7
    path = _write(tmp_path / "bad.jsonl", rows)
    with pytest.raises(InputError) as err:
        train_preference_model(_cfg(tmp_path, f"data.path={path}"))
    assert "bad.jsonl:4" in str(err.value) and "[ratings[1]]" in str(err.value) and "1..3" in str(err.value)
    rows[3]["ratings"][1] = 2.5
    path = _write(tmp_path / "frac.jsonl", rows)
    with pytest.raises(InputError, match=r"frac.jsonl:4 \[ratings\[1\]\].*not a whole number"):
        train_preference_model(_cfg(tmp_path, f"data.path={path}"))
    rows[3]["ratings"] = [1, 2]
    path = _write(tmp_path / "short.jsonl", rows)
    with pytest.raises(InputError, match=r"short.jsonl:4 \[ratings\].*2 ratings for 3 completions"):
        train_preference_model(_cfg(tmp_path, f"data.path={path}"))


def test_a_pairs_file_for_an_ordinal_model_and_a_ratings_file_for_pairs_are_refused(tmp_path):
    pairs = _write(tmp_path / "pairs.jsonl", [{"prompt": "p", "chosen": "alpha", "rejected": "mu"}] * 1)
    with pytest.raises(InputError, match="trains on ratings"):
        train_preference_model(_cfg(tmp_path, f"data.path={pairs}"))
    rated = _write(tmp_path / "rated.jsonl", [r.to_json() for r in ratings(2)])
    for reader in (read_pairs, read_prompts):
        with pytest.raises(InputError, match=r"rated.jsonl.*ratings file.*--kind ordinal"):
            reader(rated)
    critiques = _write(tmp_path / "crit.jsonl", [{"prompt": "p", "completion": "y", "critique": "too long"}])
    with pytest.raises(InputError, match=r"critiques file.*--method ilf"):
        read_prompts(critiques)


def test_train_preference_model_hands_ordinal_to_its_run_and_refuses_pairs_for_it(tmp_path):
    assert KIND_RUNS["ordinal"].run is train_ordinal_model
    with pytest.raises(ValueError, match=r"rm\.kind=ordinal trains on ratings: call prefkit\.engine\.preference\."
                                         r"ordinal\.train_ordinal_model\(cfg, ratings=\.\.\.\), or give the "
                                         r"ratings file as data\.path"):
        train_preference_model(_cfg(tmp_path), records=[])
    with pytest.raises(ValueError, match="already has a run"):
        register_kind_run("ordinal", KIND_RUNS["ordinal"])


def test_importing_the_pairwise_trainer_alone_registers_the_ordinal_run():
    """``train.py`` reaches ``ordinal`` only through ``kinds.KIND_RUNS``, which the package's
    ``__init__`` fills: a fresh interpreter that imports nothing else still has it."""
    code = ("from prefkit.engine.preference.train import train_preference_model\n"
            "from prefkit.engine.preference.kinds import KIND_RUNS\n"
            "print(sorted(KIND_RUNS), KIND_RUNS['ordinal'].run.__module__)")
    env = {**os.environ, "PYTHONPATH": str(Path(prefkit.__file__).parents[1])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    assert out.split() == ["['ordinal']", "prefkit.engine.preference.ordinal"]


@pytest.mark.parametrize("overrides, message", [
    (["rm.kind=ordinal"], "needs the rating scale"),
    (["rm.kind=ordinal", "rm.scale=1.5-4"], "whole-number"),
    (["rm.kind=ordinal", "rm.scale=3-3"], "LOW < HIGH"),
    (["rm.kind=ordinal", "rm.scale=1-5", "rm.margin=0.5"], "rm.margin"),
    (["rm.kind=bt", "rm.scale=1-5"], "rm.scale applies to rm.kind=ordinal"),
    (["rm.ordinal_variant=nested"], "rm.ordinal_variant applies"),
])
def test_ordinal_config_is_checked(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load(RunConfig, None, overrides)
