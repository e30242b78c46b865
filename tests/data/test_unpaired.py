"""TRL's unpaired format (prompt, completion, label): reading, validation, splitting pairs."""

from __future__ import annotations

import pytest

from prefkit.data import (
    PairRecord,
    UnpairedRecord,
    kl_partners,
    read_feedback,
    read_pairs,
    read_prompts,
    read_unpaired,
    unpair,
    validate,
)
from prefkit.errors import InputError

ROWS = [
    {"prompt": "p", "completion": "great answer", "label": True},
    {"prompt": "p", "completion": "bad answer", "label": False, "weight": 2.0},
    {"prompt": [{"role": "user", "content": "hi"}], "completion": [{"role": "assistant", "content": "hello"}],
     "label": 1, "annotator": 7},
]


def test_reading_unpaired_rows(jsonl):
    records, report = read_unpaired(jsonl(ROWS))
    assert report.kind == "unpaired" and report.kept == 3
    assert records[0] == UnpairedRecord("p", "great answer", True)
    assert records[1].weight == 2.0 and records[1].label is False
    assert records[2].label is True and records[2].annotator == "7"
    assert records[1].to_json() == ROWS[1]


def test_feedback_and_prompts_and_validate_detect_unpaired_files(jsonl):
    path = jsonl(ROWS)
    assert read_feedback(path)[1].kind == "unpaired"
    assert [p.prompt for p in read_prompts(path)[0]] == ["p", ROWS[2]["prompt"]]
    report = validate(path)
    assert report.valid and report.kind == "unpaired" and report.sequence_tokens is not None


@pytest.mark.parametrize(
    ("row", "field", "words"),
    [
        ({"prompt": "p", "completion": "c", "label": "yes"}, "label", "must be true (desirable) or false"),
        ({"prompt": "p", "completion": "c", "label": 0.5}, "label", "must be true"),
        ({"prompt": "p", "completion": "", "label": True}, "completion", "is empty"),
        ({"prompt": [{"role": "user", "content": "q"}], "completion": "c", "label": True}, "completion", "message list"),
    ],
)
def test_bad_unpaired_rows_name_line_and_field(jsonl, row, field, words):
    report = validate(jsonl([ROWS[0], row]))
    assert not report.valid
    error = report.errors[0]
    assert error.line == 2 and error.field == field and words in error.reason


def test_contradicting_thumbs_are_a_warning(jsonl):
    report = validate(jsonl([ROWS[0], {**ROWS[0], "label": False}]))
    assert report.valid and report.contradictions == 1


def test_a_paired_method_given_unpaired_data_and_the_reverse(jsonl):
    with pytest.raises(InputError, match=r"expected pairs .* holds unpaired feedback .* KTO-style losses"):
        read_pairs(jsonl(ROWS))
    pairs = jsonl([{"prompt": "p", "chosen": "a", "rejected": "b"}], name="pairs.jsonl")
    with pytest.raises(InputError, match=r"expected unpaired feedback .* holds pairs .* set data.unpair=true"):
        read_unpaired(pairs)
    records, _ = read_unpaired(pairs, split_pairs=True)
    assert records == [UnpairedRecord("p", "a", True), UnpairedRecord("p", "b", False)]


def test_unpair_orients_by_label_and_carries_weights():
    pairs = [
        PairRecord("x", "good", "bad", weight=2.0, annotator="a", source=("f", 1)),
        PairRecord("y", "worse", "better", label=0.0, source=("f", 2)),
    ]
    rows = unpair(pairs)
    assert [(r.prompt, r.completion, r.label) for r in rows] == [
        ("x", "good", True), ("y", "better", True), ("x", "bad", False), ("y", "worse", False)]
    assert rows[0].weight == rows[2].weight == 2.0 and rows[2].source == ("f", 1)


def test_unpair_refuses_ties_soft_labels_and_margins():
    with pytest.raises(InputError, match="a tie") as caught:
        unpair([PairRecord("x", "a", "b"), PairRecord("x", "c", "d", label=0.5, source=("f", 2))])
    assert caught.value.line == 2 and caught.value.field == "label"
    assert len(unpair([PairRecord("x", "a", "b"), PairRecord("x", "c", "d", label=0.5)], ties="drop")) == 2
    with pytest.raises(InputError, match="soft label"):
        unpair([PairRecord("x", "a", "b", label=0.8)])
    with pytest.raises(InputError, match="margin"):
        unpair([PairRecord("x", "a", "b", margin=1.0)])
    with pytest.raises(InputError, match="every pair was a dropped tie"):
        unpair([PairRecord("x", "a", "b", label=0.5)], ties="drop")


def test_kl_partners_pair_each_row_with_another_rows_completion():
    assert kl_partners(4) == [3, 0, 1, 2]
    assert all(i != j for i, j in enumerate(kl_partners(5)))
    with pytest.raises(ValueError, match="at least 2 rows"):
        kl_partners(1)
