"""ILF through the engine: refine -> select -> SFT rounds on the world, the selection is the argmax,
exact resume inside a round, the LLM refiner/selector path, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from prefkit.config import ConfigError, RunConfig, load
from prefkit.data.critiques import CritiqueRecord
from prefkit.engine import train
from prefkit.engine.offline.ilf import ILFShape, world_critique
from prefkit.errors import InputError
from prefkit.sim import make_world
from prefkit.sim.critiques import critique_rows


def _write_critiques(path, n: int = 12, seed: int = 0) -> str:
    rows = critique_rows(make_world("transitive", seed=0), n, np.random.default_rng(seed))
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def _cfg(tmp_path, *overrides: str) -> RunConfig:
    return load(RunConfig, None, ["method=ilf", f"out={tmp_path / 'run'}", "eval.world=transitive", "tiny.hidden_size=16",
                                  "tiny.layers=1", "tiny.heads=2", "train.max_length=48", "train.steps=6",
                                  "train.batch_size=4", "train.lr=1e-2", "train.log_every=1", "ilf.refinements=3",
                                  "ilf.max_new_tokens=8", *overrides])


def test_two_world_rounds_select_the_best_refinement_and_train_on_it(tmp_path):
    data = _write_critiques(tmp_path / "crit.jsonl")
    result = train(_cfg(tmp_path, f"data.path={data}"))
    m = result.metrics
    assert m["method"] == "ilf" and m["steps"] == 6 and [r["round"] for r in m["rounds"]] == [1, 2]
    assert m["critiques"] == 24 and m["rounds"][0]["refinements"] == 36
    for r in m["rounds"]:
        assert r["selected_incorporation"] >= r["mean_incorporation"]
        assert r["selected_score"] == r["selected_incorporation"]  # the world selector is the ground truth
    for k in (1, 2):
        rows = [json.loads(x) for x in (tmp_path / "run" / "ilf" / f"round-{k}.jsonl").read_text().splitlines()]
        assert len(rows) == 12
        for row in rows:
            assert len(row["refinements"]) == 3 and row["selected"] == int(np.argmax(row["scores"]))
    round_two = [json.loads(x) for x in (tmp_path / "run" / "ilf" / "round-2.jsonl").read_text().splitlines()]
    assert all(row["annotator"] == "world critic" for row in round_two)
    assert (tmp_path / "run" / "policy" / "config.json").is_file()
    assert (tmp_path / "run" / "reference" / "config.json").is_file()


def test_the_round_examples_are_the_selected_refinements(tmp_path):
    from prefkit.engine.offline.ilf import Refiners, first_round_rows
    from prefkit.engine.run import RunSession
    from prefkit.policy import Policy

    data = _write_critiques(tmp_path / "crit.jsonl", n=8)
    cfg = _cfg(tmp_path, f"data.path={data}", "ilf.rounds=1", "train.steps=2")
    world = make_world("transitive", seed=0)
    rows = first_round_rows(cfg, None, world)
    policy = Policy.tiny([*world.vocabulary(), *[str(r.prompt) for r in rows]], cfg.tiny)
    session = RunSession.start(cfg)
    try:
        shape = ILFShape(session, policy, rows, Refiners(cfg, policy, world), label="ilf")
        shape.micro_batches(0)
        written = [json.loads(x) for x in (tmp_path / "run" / "ilf" / "round-1.jsonl").read_text().splitlines()]
        picked = [w["refinements"][w["selected"]] for w in written]
        assert shape.examples.response_ids == policy.response_ids(picked)
        assert shape.examples.prompt_ids == policy.prompt_ids([str(r.prompt) for r in rows])
    finally:
        session.close()


def test_a_killed_run_resumes_inside_a_round_without_refining_again(tmp_path, monkeypatch):
    data = _write_critiques(tmp_path / "crit.jsonl", n=8)
    straight = train(_cfg(tmp_path / "a", f"data.path={data}", "train.steps=8"))

    def stop_at(step):
        def evaluate(policy, reference, at):
            if at == step:
                raise KeyboardInterrupt
            return {}
        return evaluate

    cfg = _cfg(tmp_path / "b", f"data.path={data}", "train.steps=8", "train.save_every=3", "train.eval_every=1")
    with pytest.raises(KeyboardInterrupt):
        train(cfg, evaluate=stop_at(5))  # killed in round 2 (steps 4-7), after the checkpoint of step 3
    calls = []
    original = ILFShape.start_round
    monkeypatch.setattr(ILFShape, "start_round", lambda self, r: (calls.append(r), original(self, r))[1])
    resumed = train(cfg, resume=True, evaluate=lambda policy, reference, step: {})
    assert calls == [1]  # round 1's rows came from the checkpoint; round 2 is built once
    for a, b in zip(straight.policy.model.parameters(), resumed.policy.model.parameters()):
        torch.testing.assert_close(a, b)


def test_the_llm_refiner_and_selector_run_on_the_policy_itself(tmp_path):
    data = _write_critiques(tmp_path / "crit.jsonl", n=4)
    cfg = _cfg(tmp_path, f"data.path={data}", "eval.world=null", "ilf.rounds=1", "ilf.refiner=policy",
               "ilf.selector=policy", "ilf.refinements=2", "train.steps=1", "train.max_length=256")
    result = train(cfg)
    (stats,) = result.metrics["rounds"]
    assert stats["refinements"] == 8 and 0.0 <= stats["selected_score"] <= 1.0
    assert stats["selected_score"] >= stats["mean_score"]
    assert "selected_incorporation" not in stats  # no world: no ground truth


def test_world_refiner_refuses_critiques_it_did_not_write(tmp_path):
    world = make_world("transitive", seed=0)
    (row,) = critique_rows(world, 1, np.random.default_rng(0))
    good = CritiqueRecord(row["prompt"], row["completion"], row["critique"], row["issues"], source=("c.jsonl", 3))
    assert world_critique(world, good).text == row["critique"]
    with pytest.raises(InputError, match=r"c\.jsonl:3 \[issues\].*structured critiques"):
        world_critique(world, CritiqueRecord(good.prompt, good.completion, "make it better", None,
                                             source=("c.jsonl", 3)))
    with pytest.raises(InputError, match=r"c\.jsonl:3 \[critique\].*not what this world's critic writes"):
        world_critique(world, CritiqueRecord(good.prompt, good.completion, "make it better", row["issues"],
                                             source=("c.jsonl", 3)))


def test_bad_input_is_named(tmp_path):
    path = _write_critiques(tmp_path / "c.jsonl", n=4)
    rows = [json.loads(x) for x in Path(path).read_text(encoding="utf-8").splitlines()]
    rows[2]["critique"] = "   "
    bad = tmp_path / "bad.jsonl"
    bad.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    with pytest.raises(InputError, match=r"bad\.jsonl:3 \[critique\].*empty"):
        train(_cfg(tmp_path, f"data.path={bad}"))
    with pytest.raises(InputError, match=r"ilf\.refiner=world asks the simulated world"):
        train(_cfg(tmp_path, f"data.path={tmp_path / 'c.jsonl'}", "eval.world=null"))
    with pytest.raises(InputError, match="ILF needs critiques"):
        train(_cfg(tmp_path, "eval.world=null", "ilf.refiner=policy", "ilf.selector=policy"))
    with pytest.raises(ConfigError, match=r"ilf\.refiner: world, policy or llm:SPEC"):
        _cfg(tmp_path, "ilf.refiner=human")
    with pytest.raises(ConfigError, match=r"ilf\.rounds is a setting of --method ilf"):
        load(RunConfig, None, ["method=sft", "ilf.rounds=3"])
