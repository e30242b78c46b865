"""Generative pairwise judges: the SFT examples (both orders, rationale), training reads exactly
what the judge reads, the saved judge loads as trained, its report, the RL step refused, the
agreement reward."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from prefkit.config import RunConfig, load
from prefkit.data import PairRecord
from prefkit.engine import TrainData, train
from prefkit.errors import InputError
from prefkit.llm.hf import HFBackend
from prefkit.preference import load_preference_model  # noqa: F401  (the package imports cleanly)
from prefkit.preference.generative import (
    ANSWER_MARKER,
    JUDGE_FILE,
    GenerativeJudge,
    agreement_rewards,
    judge_examples,
    judge_report,
    read_judge_file,
)
from prefkit.preference.llm_judge import DEFAULT_TEMPLATE, LLMJudge
from prefkit.sim import make_world
from tests.engine.conftest import make_pairs, tiny_config


def test_every_pair_is_taught_in_both_orders_and_ties_are_skipped():
    pairs = [PairRecord("q", "good one", "bad one"), PairRecord("q", "worse", "better", label=0.0),
             PairRecord("q", "same", "same too", label=0.5)]
    examples, ties = judge_examples(pairs)
    assert ties == 1 and len(examples) == 4
    first, second = examples[0], examples[1]
    assert first.target == "A" and first.first_is_better and "Response A: good one" in first.messages[0]["content"]
    assert second.target == "B" and "Response A: bad one" in second.messages[0]["content"]
    assert examples[2].target == "A" and "Response A: better" in examples[2].messages[0]["content"]
    once, _ = judge_examples(pairs, swap=False, rng=np.random.default_rng(0))
    assert len(once) == 2 and all(e.target == ("A" if e.first_is_better else "B") for e in once)


def test_a_world_rationale_names_both_responses_issues_before_the_answer():
    world = make_world("transitive", seed=0)
    (pair,) = world.pairs(1, np.random.default_rng(0))
    examples, _ = judge_examples([pair], rationale_world=world)
    for e in examples:
        assert e.target.startswith("Response A: ") and " Response B: " in e.target
        assert e.target.endswith(f"{ANSWER_MARKER} {'A' if e.first_is_better else 'B'}")


def test_training_and_judging_read_the_same_tokens(tmp_path):
    cfg = tiny_config(tmp_path, "genrm", "train.max_length=160")
    result = train(cfg, data=TrainData(pairs=make_pairs(8)))
    assert result.metrics["examples"] == 16 and result.metrics["labels"] == ["A", "B"]
    settings = read_judge_file(tmp_path / "run" / "policy")
    assert settings == {"template": DEFAULT_TEMPLATE, "labels": ("A", "B"), "rationale": False}
    judge = LLMJudge.load(tmp_path / "run", device="cpu")  # the run directory: its policy/ is the judge
    assert isinstance(judge, GenerativeJudge) and judge.labels == ("A", "B") and not judge.rationale
    pair = make_pairs(1)[0]
    (example,), _ = judge_examples([pair], swap=False, rng=np.random.default_rng(1))
    rendered = judge.backend.render(example.messages)
    assert rendered == HFBackend(result.policy).render(example.messages)
    policy = result.policy
    trained_prompt = policy.prompt_ids([rendered])[0]
    assert trained_prompt == judge.backend.policy.prompt_ids([judge.backend.render(judge.messages(
        pair.prompt, *( (pair.chosen, pair.rejected) if example.first_is_better else (pair.rejected, pair.chosen))))])[0]
    p = judge.prob([pair.prompt] * 2, [pair.chosen, pair.rejected], [pair.rejected, pair.chosen])
    torch.testing.assert_close(p[0] + p[1], torch.tensor(1.0))


def test_a_rationale_judge_writes_then_answers(tmp_path):
    world = make_world("transitive", seed=0)
    pairs = world.pairs(6, np.random.default_rng(0))
    cfg = tiny_config(tmp_path, "genrm", "genrm.rationale=world", "eval.world=transitive", "eval.prompts=4",
                      "train.max_length=256", "train.steps=2")
    result = train(cfg, data=TrainData(pairs=pairs))
    m = result.metrics
    assert m["rationale"] == "world" and m["held_out_pairs"] == 4
    assert 0.0 <= m["eval/position_consistency"] <= 1.0 and m["eval/n"] + m["eval/ties"] == 4
    judge = LLMJudge.load(tmp_path / "run" / "policy", device="cpu")
    assert judge.rationale
    p = judge.first_label_prob([pairs[0].prompt], [pairs[0].chosen], [pairs[0].rejected])
    assert p.shape == (1,) and 0.0 <= float(p[0]) <= 1.0 and len(judge.last_rationales) == 1


def test_the_report_counts_position_consistency():
    class Fixed(LLMJudge):
        def __init__(self, table):
            self.table = table

        def first_label_prob(self, prompts, first, second):
            return torch.tensor([self.table[(a, b)] for a, b in zip(first, second)])

    judge = Fixed({("x", "y"): 0.9, ("y", "x"): 0.2, ("u", "v"): 0.8, ("v", "u"): 0.7})
    report = judge_report(judge, [PairRecord("q", "x", "y"), PairRecord("q", "u", "v", label=0.0)])
    assert report["position_consistency"] == 0.5 and report["first_rate"] == 0.75
    assert report["accuracy"] == 0.5  # (0.9 + 0.8) / 2 > 1/2 right; (0.8 + 0.3) / 2 > 1/2 wrong for label 0


def test_agreement_rewards_read_the_answer_after_the_marker():
    texts = ["Response A: bad. Response B: fine. Final answer B", "A", "Final answer A", "neither"]
    rewards = agreement_rewards(texts, [False, True, False, True])
    assert rewards.tolist() == [1.0, 1.0, 0.0, 0.0]


def test_the_rl_step_is_refused_until_grpo_is_wired(tmp_path, capsys):
    from prefkit.cli.main import main

    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(p.to_json()) + "\n" for p in make_pairs(4)), encoding="utf-8")
    code = main(["train", "--method", "genrm", "--rl", "--data", str(data), "--out", str(tmp_path / "run")])
    assert code == 2
    err = capsys.readouterr().err
    assert "genrm.rl" in err and "GRPO" in err
    with pytest.raises(InputError, match="GRPO"):
        train(load(RunConfig, None, ["method=genrm", "genrm.rl=true", f"out={tmp_path / 'r2'}",
                                     f"data.path={data}"]))
    assert main(["train", "--method", "sft", "--rl", "--data", str(data), "--out", str(tmp_path / "r3")]) == 2
    assert "genrm.rl is a setting of --method genrm" in capsys.readouterr().err


def test_a_broken_judge_file_is_named(tmp_path):
    (tmp_path / JUDGE_FILE).write_text(json.dumps({"format": "prefkit.judge", "version": 1, "labels": ["A"]}))
    with pytest.raises(ValueError, match="not a prefkit judge settings file"):
        read_judge_file(tmp_path)
