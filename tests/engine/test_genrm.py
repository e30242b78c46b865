"""Generative pairwise judges: the SFT examples (both orders, rationale), training reads exactly
what the judge reads, the saved judge loads as trained, its report, the agreement reward, and
Think-RM's RL step (GRPO on the judge: end to end, its reward, its refusals, resume)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from prefkit.config import ConfigError, RunConfig, load
from prefkit.data import PairRecord
from prefkit.engine import TrainData, train
from prefkit.engine.offline.genrm import world_eval_pairs
from prefkit.errors import InputError
from prefkit.llm.hf import HFBackend
from prefkit.policy import Policy
from prefkit.preference import (
    JudgeError,
    load_preference_model,  # noqa: F401  (the package imports cleanly)
)
from prefkit.preference.generative import (
    ANSWER_MARKER,
    JUDGE_FILE,
    AgreementReward,
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


def test_agreement_rewards_of_a_rationale_judge_need_the_answer_marker():
    texts = ["Response A: fine. Response B: bad.", "Response A: fine. Final answer A"]
    assert agreement_rewards(texts, [True, True]).tolist() == [1.0, 1.0]  # the rationale's "A" is read
    assert agreement_rewards(texts, [True, True], require_marker=True).tolist() == [0.0, 1.0]


def test_the_agreement_reward_looks_up_each_prompts_better_position():
    reward = AgreementReward.from_prompts(["p1", "p2", "p3", "p3"], [True, False, True, False])
    assert reward.prompts == ["p1", "p2", "p3"]
    got = reward.embed(["p1", "p1", "p2", "p3", "p2"], ["A", "B", "B", "A", "nothing"])
    assert got.shape == (5, 1) and got[:, 0].tolist() == [1.0, 0.0, 1.0, 0.5, 0.0]  # p3 is labelled both ways
    assert reward.prob(["p1"], ["A"], ["B"]).tolist() == [1.0]
    assert reward.prob(["p1"], ["A"], ["A"]).tolist() == [0.5]
    with pytest.raises(JudgeError, match="not one of the judge prompts"):
        reward.embed(["elsewhere"], ["A"])
    thinking = AgreementReward.from_prompts(["p"], [False], rationale=True)
    assert thinking.embed(["p"] * 2, ["Response A: x. Response B: y.", "Response B: y. Final answer B"])[:, 0].tolist() \
        == [0.0, 1.0]


RL = ("train.max_length=160", "genrm.rl=true", "genrm.rl_steps=2", "online.samples_per_prompt=2",
      "online.prompts_per_step=4", "online.max_new_tokens=4", "train.save_every=1")


def sft_weights(run):
    """The SFT judge's weights: the outer run's final checkpoint."""
    from prefkit.engine import checkpoint as ckpt
    from prefkit.engine.rundir import latest_checkpoint

    policy = Policy.load(run / "policy", device="cpu")
    ckpt.read_checkpoint(latest_checkpoint(run / "checkpoints")).load_weights(policy.model)
    return policy.model.state_dict()


def test_the_rl_step_trains_the_judge_on_its_agreement_with_the_labels(tmp_path, monkeypatch):
    seen = []
    original = AgreementReward.rewards

    def spy(self, prompts, completions):
        out = original(self, prompts, completions)
        seen.append((list(prompts), list(completions), out.clone()))
        return out

    monkeypatch.setattr(AgreementReward, "rewards", spy)
    pairs = make_pairs(8)
    cfg = tiny_config(tmp_path, "genrm", *RL, "eval.world=transitive", "eval.prompts=4")
    result = train(cfg, data=TrainData(pairs=pairs))
    m, run = result.metrics, tmp_path / "run"
    assert m["rl"] and m["rl/steps"] == 2 and m["rl/prompts"] == 16 and m["rl/samples_per_prompt"] == 2
    assert m["rl/reward_evals"] == 2 * 4 * 2 and m["steps"] == 4
    for key in ("eval/accuracy", "eval/position_consistency", "sft/eval/accuracy", "sft/eval/position_consistency"):
        assert key in m
    # the loop's reward is agreement_rewards of its completions against each judge prompt's better position
    examples, _ = judge_examples(pairs)
    backend = HFBackend(result.policy)
    better = {backend.render(e.messages): e.first_is_better for e in examples}
    assert len(seen) == 2 and all(len(p) == 8 for p, _, _ in seen)
    for prompts, completions, rewards in seen:
        assert set(prompts) <= set(better)
        torch.testing.assert_close(rewards, agreement_rewards(completions, [better[p] for p in prompts], marker=None))
    flat = torch.cat([r for _, _, r in seen])
    assert 0.0 < float(flat.mean()) < 1.0  # some judgements right, some wrong: the case can fail
    logged = [json.loads(line) for line in (run / "rl" / "metrics.jsonl").read_text().splitlines()]
    steps = [row for row in logged if "rewards/mean" in row]
    assert [row["rewards/mean"] for row in steps] == pytest.approx([float(r.mean()) for _, _, r in seen])
    # the RL step changed the judge, and OUT/policy is the RL-improved judge, loadable as one
    after = Policy.load(run / "policy", device="cpu").model.state_dict()
    before = sft_weights(run)
    assert any(not torch.equal(after[k], before[k]) for k in after)
    rl_policy = Policy.load(run / "rl" / "policy", device="cpu").model.state_dict()
    assert all(torch.equal(after[k], rl_policy[k]) for k in after)
    judge = LLMJudge.load(run / "policy", device="cpu")
    assert isinstance(judge, GenerativeJudge) and judge.labels == ("A", "B")
    held_out = judge_report(judge, world_eval_pairs(make_world("transitive", seed=0), 4, 0))
    assert m["eval/accuracy"] == held_out["accuracy"]  # reported after the RL step, of the saved judge
    assert m["eval/position_consistency"] == held_out["position_consistency"]
    assert json.loads((run / "metrics.json").read_text())["rl/steps"] == 2
    rl_cfg = load(RunConfig, run / "rl" / "config.yaml", [])
    assert rl_cfg.method == "grpo" and rl_cfg.train.steps == 2 and rl_cfg.online.samples_per_prompt == 2


def test_a_cut_rl_step_resumes_exactly(tmp_path, monkeypatch):
    pairs = make_pairs(8)
    whole = train(tiny_config(tmp_path / "a", "genrm", *RL), data=TrainData(pairs=pairs)).metrics
    calls = {"n": 0}
    original = AgreementReward.rewards

    def cut_at_step_two(self, prompts, completions):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # killed in RL step 2, after step 1's checkpoint
        return original(self, prompts, completions)

    monkeypatch.setattr(AgreementReward, "rewards", cut_at_step_two)
    cfg = tiny_config(tmp_path / "b", "genrm", *RL)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, data=TrainData(pairs=pairs))
    monkeypatch.setattr(AgreementReward, "rewards", original)
    resumed = train(cfg, data=TrainData(pairs=pairs), resume=True).metrics
    timing = {"wall_s", "setup_s", "tokens_per_s", "rl/wall_s", "rl/gen_s", "rl/dir"}
    assert {k: v for k, v in resumed.items() if k not in timing} == {k: v for k, v in whole.items() if k not in timing}
    a = Policy.load(tmp_path / "a" / "run" / "policy", device="cpu").model.state_dict()
    b = Policy.load(tmp_path / "b" / "run" / "policy", device="cpu").model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    again = train(cfg, data=TrainData(pairs=pairs), resume=True).metrics  # after completion: the same summary
    assert {k: v for k, v in again.items() if k != "setup_s"} == {k: v for k, v in resumed.items() if k != "setup_s"}
    longer = tiny_config(tmp_path / "b", "genrm", *RL, "train.steps=5")  # the SFT may not grow under its RL step
    with pytest.raises(InputError, match="started from the judge of 4 SFT steps"):
        train(longer, data=TrainData(pairs=pairs), resume=True)


def test_a_lora_judge_goes_on_training_its_adapters_in_the_rl_step(tmp_path):
    from safetensors.torch import load_file

    from prefkit.engine.rundir import latest_checkpoint

    cfg = tiny_config(tmp_path, "genrm", *RL, "lora.r=2")
    assert train(cfg, data=TrainData(pairs=make_pairs(8))).metrics["rl/steps"] == 2
    run = tmp_path / "run"
    sft = load_file(latest_checkpoint(run / "checkpoints") / "model.safetensors")
    rl = load_file(latest_checkpoint(run / "rl" / "checkpoints") / "model.safetensors")
    assert sft.keys() == rl.keys() and any("lora_" in k for k in sft)
    assert all(torch.equal(sft[k], rl[k]) != ("lora_" in k) for k in sft)  # adapters moved, the base did not
    assert (run / "adapter").is_dir() and isinstance(LLMJudge.load(run / "policy", device="cpu"), GenerativeJudge)


def test_the_rl_step_refuses_what_it_cannot_do(tmp_path, capsys):
    from prefkit.cli.main import main

    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(p.to_json()) + "\n" for p in make_pairs(4)), encoding="utf-8")

    def refused(*overrides, match, field=None):
        cfg = tiny_config(tmp_path, "genrm", f"data.path={data}", "train.max_length=160", "genrm.rl=true", *overrides)
        with pytest.raises(InputError, match=match) as error:
            train(cfg)
        if field is not None:
            assert error.value.field == field
        assert not (tmp_path / "run" / "policy").exists()  # refused before the SFT

    refused("online.samples_per_prompt=1", match="samples_per_prompt must be >= 2", field="online.samples_per_prompt")
    refused("online.judge=world-truth", match="online.judge is not read", field="online.judge")
    refused("online.reward=win_rate", match="online.reward is not read", field="online.reward")
    refused("train.final_checkpoint=false", match="final checkpoint", field="train.final_checkpoint")
    refused("online.max_new_tokens=160", match="must exceed online.max_new_tokens", field="train.max_length")
    refused("genrm.rationale=world", "eval.world=transitive", "online.max_new_tokens=4",
            match="SFT targets are up to", field="online.max_new_tokens")
    with pytest.raises(ConfigError, match=r"genrm\.rl_steps is a setting of the RL step"):
        load(RunConfig, None, ["method=genrm", "genrm.rl_steps=3"])
    with pytest.raises(ConfigError, match=r"genrm\.rl_lr"):
        load(RunConfig, None, ["method=genrm", "genrm.rl=true", "genrm.rl_lr=0"])
    code = main(["train", "--method", "genrm", "--rl", "--data", str(data), "--out", str(tmp_path / "r2"),
                 "online.samples_per_prompt=1"])
    assert code == 2 and "online.samples_per_prompt" in capsys.readouterr().err
    assert main(["train", "--method", "sft", "--rl", "--data", str(data), "--out", str(tmp_path / "r3")]) == 2
    assert "genrm.rl is a setting of --method genrm" in capsys.readouterr().err


def test_a_broken_judge_file_is_named(tmp_path):
    (tmp_path / JUDGE_FILE).write_text(json.dumps({"format": "prefkit.judge", "version": 1, "labels": ["A"]}))
    with pytest.raises(ValueError, match="not a prefkit judge settings file"):
        read_judge_file(tmp_path)
