"""The LLM judge: exact symmetry, position debiasing, batching that equals one-at-a-time, bad
templates and labels, and the judge wired into ``rm eval`` and the online loop."""

from __future__ import annotations

import json

import pytest
import torch

from prefkit.config import TinyConfig
from prefkit.policy import Policy, build_tiny_checkpoint
from prefkit.preference import PreferenceModel
from prefkit.preference.llm_judge import LLMJudge

WORDS = "which response answers the instruction better response a b answer with or red blue green sky sea"
PROMPTS = ["what colour is the sky", "what colour is the sea", "name a colour"]
FIRST = ["blue", "blue green", "red"]
SECOND = ["red red", "green", "sky blue sea"]


@pytest.fixture(scope="module")
def judge_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("judge") / "model"
    return build_tiny_checkpoint(directory, [WORDS.replace("a b", "A B") + " Instruction Response Answer: A B"],
                                 TinyConfig(hidden_size=16, layers=1, heads=2), seed=0)


@pytest.fixture(scope="module")
def judge(judge_dir):
    return LLMJudge.load(judge_dir, device="cpu")


def test_the_judge_is_a_preference_model_with_exact_symmetry(judge):
    assert isinstance(judge, PreferenceModel)
    p_ab = judge.prob(PROMPTS, FIRST, SECOND)
    p_ba = judge.prob(PROMPTS, SECOND, FIRST)
    assert p_ab.shape == (3,) and bool(((p_ab >= 0) & (p_ab <= 1)).all())
    torch.testing.assert_close(p_ab + p_ba, torch.ones(3), atol=1e-6, rtol=0)
    torch.testing.assert_close(judge.prob(PROMPTS, FIRST, FIRST), torch.full((3,), 0.5), atol=1e-6, rtol=0)


def test_a_judge_that_always_answers_a_is_debiased_to_one_half(judge_dir):
    biased = LLMJudge.load(judge_dir, device="cpu")
    label_a = biased.label_ids[0][0]
    with torch.no_grad():
        biased.policy.model.lm_head.weight.zero_()
        bias = torch.zeros(biased.policy.model.config.vocab_size)
        bias[label_a] = 20.0
        biased.policy.model.lm_head.bias = torch.nn.Parameter(bias)
    assert bool((biased.first_label_prob(PROMPTS, FIRST, SECOND) > 0.99).all())  # position bias in full
    torch.testing.assert_close(biased.prob(PROMPTS, FIRST, SECOND), torch.full((3,), 0.5), atol=1e-6, rtol=0)


def test_batched_answers_equal_one_at_a_time(judge_dir):
    batched = LLMJudge.load(judge_dir, device="cpu", batch_size=3)
    single = LLMJudge.load(judge_dir, device="cpu", batch_size=1)
    torch.testing.assert_close(batched.first_label_prob(PROMPTS, FIRST, SECOND),
                               single.first_label_prob(PROMPTS, FIRST, SECOND), atol=1e-6, rtol=0)


def test_the_label_probability_is_the_softmax_of_the_two_label_logits(judge):
    text = judge.backend.render(judge.messages(PROMPTS[0], FIRST[0], SECOND[0]))
    ids = torch.tensor([judge.policy.prompt_ids([text])[0]])
    with torch.no_grad():
        log_probs = torch.log_softmax(judge.policy.model(input_ids=ids).logits[0, -1].float(), dim=-1)
    a, b = (torch.logsumexp(log_probs[ids_], dim=-1) for ids_ in judge.label_ids)
    expected = torch.exp(a) / (torch.exp(a) + torch.exp(b))
    torch.testing.assert_close(judge.first_label_prob(PROMPTS[:1], FIRST[:1], SECOND[:1]), expected.reshape(1),
                               atol=1e-6, rtol=0)


def test_bad_templates_and_labels_are_errors(judge_dir):
    policy = Policy.load(judge_dir, device="cpu")
    with pytest.raises(ValueError, match=r"\{second\}"):
        LLMJudge(policy, template="{prompt} {first}")
    with pytest.raises(ValueError, match="share a first token"):
        LLMJudge(policy, labels=("A", "A"))
    with pytest.raises(ValueError, match="not in the judge's vocabulary"):
        LLMJudge(policy, labels=("A", "zebra"))
    with pytest.raises(ValueError, match="positions"):
        LLMJudge(policy).prob(["red " * 2000], ["blue"], ["green"])


def test_rm_eval_scores_an_llm_judge_on_pairs(judge_dir, tmp_path, capsys):
    from prefkit.cli.main import main
    from prefkit.data import PairRecord, write_jsonl

    data = write_jsonl([PairRecord(p, a, b) for p, a, b in zip(PROMPTS, FIRST, SECOND)], tmp_path / "pairs.jsonl")
    capsys.readouterr()
    assert main(["rm", "eval", "--model", f"llm:{judge_dir}", "--data", str(data), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["kind"] == "llm" and result["n"] == 3 and 0.0 <= result["accuracy"] <= 1.0


def test_online_training_with_an_llm_judge_counts_its_queries(judge_dir, tmp_path):
    from prefkit.config import RunConfig, load
    from prefkit.engine import TrainData, train

    cfg = load(RunConfig, None, [
        "method=online_dpo", f"out={tmp_path / 'run'}", f"online.judge=llm:{judge_dir}", "tiny.hidden_size=16",
        "tiny.layers=1", "tiny.heads=2", "train.steps=2", "train.max_length=48", "train.log_every=1",
        "online.prompts_per_step=2", "online.max_new_tokens=4",
    ])
    result = train(cfg, data=TrainData(prompts=PROMPTS), progress=False)
    assert result.metrics["steps"] == 2
    assert 0 < result.metrics["queries"] <= 4  # one pair per prompt per step; identical pairs are free


# -- labels and templates -------------------------------------------------------------------------


def _policy_with(words: str) -> Policy:
    return Policy.tiny([words], TinyConfig(hidden_size=16, layers=1, heads=2), seed=0)


def test_labels_are_chosen_automatically_when_a_and_b_cannot_be_told_apart():
    judge = LLMJudge(_policy_with("red blue 1 2 sky"))  # no A or B in the vocabulary
    assert judge.labels == ("1", "2") and judge.labels_chosen_automatically
    assert judge.label_ids[0] != judge.label_ids[1]
    assert LLMJudge(_policy_with("A B 1 2")).labels == ("A", "B")
    with pytest.raises(ValueError, match="no label pair"):
        LLMJudge(_policy_with("red blue sky"))
    with pytest.raises(ValueError, match="not in the judge's vocabulary"):  # explicit labels are never replaced
        LLMJudge(_policy_with("red blue 1 2"), labels=("A", "B"))


def test_labels_and_template_parsing():
    from prefkit.preference.llm_judge import check_template, parse_labels

    assert parse_labels(" Yes , No ") == ("Yes", "No")
    for bad in ("A", "A,A", "A,", "A,B,C"):
        with pytest.raises(ValueError, match="two different"):
            parse_labels(bad)
    with pytest.raises(ValueError, match=r"str\.format"):
        check_template("{prompt} {first} {second} {unknown}")


def test_the_judge_configuration_is_read_where_the_judge_is_resolved(judge_dir, tmp_path):
    from prefkit.config import ConfigError, RunConfig, load
    from prefkit.engine.online.judge import resolve_judge
    from prefkit.errors import InputError

    template = tmp_path / "judge.txt"
    template.write_text("Q: {prompt}\n{first_label}) {first}\n{second_label}) {second}\nBetter:", encoding="utf-8")
    cfg = load(RunConfig, None, [f"online.judge=llm:{judge_dir}", "online.judge_labels=B,A",
                                 f"online.judge_template={template}", "train.device=cpu"])
    judge, name = resolve_judge(cfg, None)
    assert judge.labels == ("B", "A") and judge.template.startswith("Q: {prompt}") and name == f"llm:{judge_dir}"
    for override, match in ((["online.judge_labels=1,2"], "applies to LLM and rubric judges"),
                            ([f"online.judge=llm:{judge_dir}", "online.judge_labels=A"], "two different")):
        with pytest.raises((ConfigError, ValueError), match=match):
            load(RunConfig, None, override)
    missing = load(RunConfig, None, [f"online.judge=llm:{judge_dir}", f"online.judge_template={tmp_path / 'no.txt'}"])
    with pytest.raises(InputError, match="cannot read the judge template"):
        resolve_judge(missing, None)
    bad = tmp_path / "bad.txt"
    bad.write_text("{prompt} {first}", encoding="utf-8")
    with pytest.raises(ValueError, match=r"\{second\}"):
        resolve_judge(load(RunConfig, None, [f"online.judge=llm:{judge_dir}", f"online.judge_template={bad}"]), None)
