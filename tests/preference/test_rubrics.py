"""Rubrics: parsing, contrastive generation with label-consistency rejection, the rubric judge
(a PreferenceModel in rm eval and the online loop), the rubric file and its bad input."""

from __future__ import annotations

import json

import pytest
import torch

from prefkit.cli.main import main
from prefkit.data import PairRecord, write_jsonl
from prefkit.errors import InputError
from prefkit.preference import PreferenceModel
from prefkit.preference.rubrics import (
    Rubric,
    RubricJudge,
    general_rubric,
    generate_rubrics,
    parse_rubric,
    read_rubric_file,
)
from tests.preference.scripted import ScriptedBackend, field

PAIRS = [PairRecord("tell me about reefs", "coral fish water", "stupid"),  # chosen is longer
         PairRecord("tell me about stars", "orbit", "ugh whatever nonsense"),  # chosen is shorter
         PairRecord("tell me about rain", "cloud wind snow", "cold")]


def _scripted(content: str) -> str:
    """Writes a 'longer is better' rubric; grades by length when the rubric says so, else answers A."""
    if content.startswith("Write a grading rubric"):
        return '{"hard_rules": ["Answer the question."], "principles": ["Prefer the longer answer."]}'
    first, second = field(content, "Response A"), field(content, "Response B")
    if "longer answer" in content:
        return "A" if len(first.split()) >= len(second.split()) else "B"
    return "A"


def test_parse_rubric_and_render():
    rubric = parse_rubric('ok: {"hard_rules": ["Be brief."], "principles": ["Be kind.", "Be right."]} done')
    assert rubric == Rubric(("Be brief.",), ("Be kind.", "Be right."))
    assert rubric.render() == "Hard rules:\n- Be brief.\nPrinciples:\n- Be kind.\n- Be right."
    for junk in ("no json", '{"principles": "x"}', '{"hard_rules": [], "principles": []}', "{not json}"):
        assert parse_rubric(junk) is None


def test_rubrics_are_kept_only_when_the_judge_reproduces_the_label():
    backend = ScriptedBackend(_scripted)
    result = generate_rubrics(PAIRS, backend, tries=2)
    assert [p for p, _ in result.rubrics] == ["tell me about reefs", "tell me about rain"]
    assert result.stats == {"pairs": 3, "kept": 2, "without_rubric": 1, "rejected": 2, "unparsed": 0, "tries": 2}
    assert result.general == Rubric(principles=("Prefer the longer answer.",))  # shared by both kept rubrics


def test_the_rubric_judge_is_a_debiased_preference_model():
    judge = RubricJudge(ScriptedBackend(_scripted), {"tell me about reefs": Rubric(principles=("Prefer the longer "
                                                                                                 "answer.",))})
    assert isinstance(judge, PreferenceModel)
    p = judge.prob(["tell me about reefs"], ["coral fish water"], ["stupid"])
    torch.testing.assert_close(p, torch.tensor([1.0]))
    with pytest.raises(ValueError, match="no rubric for the prompt"):
        judge.prob(["tell me about moon"], ["a"], ["b"])
    general = RubricJudge(ScriptedBackend(_scripted), general=Rubric(principles=("Prefer the longer answer.",)))
    assert float(general.prob(["anything"], ["a b"], ["c"])[0]) == 1.0
    assert general_rubric([Rubric(principles=("x",))]) is None  # nothing shared
    with pytest.raises(ValueError, match="needs rubrics"):
        RubricJudge(ScriptedBackend(_scripted))
    with pytest.raises(ValueError, match=r"\{rubric\}"):
        RubricJudge(ScriptedBackend(_scripted), general=Rubric(principles=("x",)), template="{prompt}{first}{second}")


@pytest.fixture(scope="module")
def judge_model(tmp_path_factory):
    from prefkit.config import TinyConfig
    from prefkit.policy import build_tiny_checkpoint

    return build_tiny_checkpoint(tmp_path_factory.mktemp("rubric") / "m", ["A B coral fish water stupid rain"],
                                 TinyConfig(hidden_size=16, layers=1, heads=2))


def test_rubric_files_work_in_rm_eval_and_as_the_online_judge(judge_model, tmp_path, capsys):
    from prefkit.config import RunConfig, load
    from prefkit.engine.online.judge import resolve_judge

    rubrics = tmp_path / "rubrics.json"
    rubrics.write_text(json.dumps({"format": "prefkit.rubrics", "version": 1, "judge": f"hf:{judge_model}",
                                   "labels": ["A", "B"], "general": {"principles": ["Stay on topic."]},
                                   "rubrics": [{"prompt": "tell me about reefs", "hard_rules": ["Mention fish."],
                                                "principles": []}]}))
    data = write_jsonl(PAIRS, tmp_path / "pairs.jsonl")
    assert main(["rm", "eval", "--model", f"rubric:{rubrics}", "--data", str(data), "--json",
                 "--device", "cpu"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["kind"] == "rubric" and result["n"] == 3 and result["labels"] == ["A", "B"]
    cfg = load(RunConfig, None, [f"online.judge=rubric:{rubrics}", "online.judge_labels=B,A", "train.device=cpu"])
    judge, name = resolve_judge(cfg, None)
    assert isinstance(judge, RubricJudge) and judge.labels == ("B", "A") and name == f"rubric:{rubrics}"
    p = judge.prob(["tell me about reefs", "other"], ["coral", "fish"], ["stupid", "rain"])
    torch.testing.assert_close(p + judge.prob(["tell me about reefs", "other"], ["stupid", "rain"], ["coral", "fish"]),
                               torch.ones(2), atol=1e-6, rtol=0)


def test_bad_rubric_files_are_clear_errors(tmp_path):
    path = tmp_path / "r.json"
    for content, match in (("{", "not JSON"), ('{"format": "x"}', "not a prefkit rubric file"),
                           ('{"format": "prefkit.rubrics", "version": 1, "rubrics": [{"prompt": "p", '
                            '"principles": [3]}]}', "non-empty strings")):
        path.write_text(content)
        with pytest.raises(InputError, match=match):
            read_rubric_file(path)
    with pytest.raises(InputError, match="cannot read"):
        read_rubric_file(tmp_path / "missing.json")


def test_the_rubrics_command_refuses_to_write_when_nothing_is_consistent(judge_model, tmp_path, capsys):
    data = write_jsonl(PAIRS, tmp_path / "pairs.jsonl")
    out = tmp_path / "rubrics.json"
    assert main(["rubrics", "--data", str(data), "--llm", f"hf:{judge_model}", "--out", str(out), "--tries", "1"]) == 2
    assert "nothing written" in capsys.readouterr().err and not out.exists()
