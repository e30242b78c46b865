"""One validation path: what the trainers refuse, the readers (and so `prefkit validate` and
data.skip_invalid) refuse too, with the same field; hints name keys that exist."""

import json

import pytest

from prefkit.data import InvalidRowsError, LengthProblem, read_lists, read_pairs, validate
from prefkit.data.lengths import over_length


def msg(role, content):
    return {"role": role, "content": content}


@pytest.mark.parametrize(
    ("row", "field"),
    [
        ({"prompt": [msg("user", "q")], "chosen": [msg("user", "a")], "rejected": [msg("assistant", "b")]},
         "chosen[0].role"),
        ({"prompt": [msg("user", "q")], "chosen": [msg("assistant", "a")],
          "rejected": [msg("assistant", "b"), msg("tool", "x")]}, "rejected[1].role"),
        # implicit prompt: the index is the message's place in the row's own list
        ({"chosen": [msg("user", "q"), msg("assistant", "a"), msg("user", "more")],
          "rejected": [msg("user", "q"), msg("assistant", "b")]}, "chosen[2].role"),
    ],
)
def test_a_response_with_a_non_assistant_role_is_an_invalid_row(jsonl, row, field):
    good = {"prompt": [msg("user", "q")], "chosen": [msg("assistant", "a")], "rejected": [msg("assistant", "b")]}
    path = jsonl([good, row])
    report = validate(path)
    assert not report.valid
    ((line, named, reason),) = [(e.line, e.field, e.reason) for e in report.errors]
    assert (line, named) == (2, field) and "a response holds only assistant messages" in reason
    with pytest.raises(InvalidRowsError) as caught:
        read_pairs(path)
    assert (caught.value.line, caught.value.field) == (2, field)
    records, skipped = read_pairs(path, skip_invalid=True)
    assert len(records) == 1 and [e.field for e in skipped.skipped] == [field]


def test_list_responses_are_checked_too(jsonl):
    path = jsonl([{"prompt": [msg("user", "q")], "responses": [[msg("assistant", "a")], [msg("system", "b")]],
                   "scores": [1, 0]}])
    with pytest.raises(InvalidRowsError) as caught:
        read_lists(path)
    assert caught.value.field == "responses[1][0].role"


def test_the_duplicate_hint_names_keys_that_exist(jsonl):
    from prefkit.config import DataConfig

    row = {"prompt": "q", "chosen": "a", "rejected": "b"}
    report = validate(jsonl([row, row]))
    assert "data.dedupe=true" in report.errors[0].reason and "validate --dedupe" in report.errors[0].reason
    assert DataConfig(dedupe=True).dedupe
    assert len(read_pairs(jsonl([row, row]), dedupe=True)[0]) == 1


def test_the_many_errors_hint_names_data_skip_invalid(jsonl):
    with pytest.raises(InvalidRowsError, match=r"data\.skip_invalid=true \(validate --skip-invalid\) skips"):
        read_pairs(jsonl([{"prompt": "q", "chosen": "", "rejected": "b"}] * 2 + [{"prompt": "q", "chosen": "a", "rejected": "b"}]))


def test_json_errors_say_at_column_once(jsonl, tmp_path):
    report = validate(jsonl(['{"prompt": "q", "chosen": "unterminated', {"prompt": "q", "chosen": "a", "rejected": "b"}]))
    assert report.errors[0].reason == "malformed JSON: Invalid control character at column 40"
    last = tmp_path / "last.jsonl"
    last.write_text('{"prompt": "q", "chosen": "a", "rejected": "b"}\n{"prompt": "q", "chosen": "unterminated')
    assert validate(last).errors[0].reason == "malformed JSON: Unterminated string starting at column 27"


def test_over_length_names_the_first_response_over_or_the_prompt():
    assert over_length(10, [("chosen", 5), ("rejected", 6)], 16) is None
    assert over_length(10, [("chosen", 6), ("rejected", 9)], 16) == LengthProblem(
        "rejected", over_length(10, [("chosen", 6), ("rejected", 9)], 16).reason)
    assert over_length(10, [("chosen", 7), ("rejected", 30)], 16).field == "chosen"  # the first over
    problem = over_length(16, [("chosen", 2), ("rejected", 3)], 16)
    assert problem.field == "prompt" and "the prompt alone is 16 tokens, leaving no room for chosen" in problem.reason
    assert over_length(20, [], 16).field == "prompt" and over_length(16, [], 16) is None
    assert "is at least 30 tokens" in over_length(10, [("chosen", 20)], 16, lower_bound=True).reason
    assert "train.truncation=truncate" in problem.reason


def test_validate_names_the_first_response_over_like_train(jsonl):
    path = jsonl([{"prompt": "a b", "chosen": "w " * 5, "rejected": "w " * 30},
                  {"prompt": "a b", "chosen": "w " * 20, "rejected": "w " * 30},
                  {"prompt": "p " * 40, "chosen": "x", "rejected": "y"}])
    report = validate(path, max_length=16, truncation="error")
    assert [(e.line, e.field) for e in report.errors] == [(1, "rejected"), (2, "chosen"), (3, "prompt")]
    assert report.errors[0].reason.startswith("prompt + rejected is 34 tokens, over max_length 16")
    # the whitespace count shares the two special tokens as the trainer does: bos + prompt, response + eos
    assert json.loads(json.dumps(report.to_json()))["too_long"] == 0
