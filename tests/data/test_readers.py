"""Readers: valid TRL-format files parse to the expected records; every bad row is named by
file, line and field; skipping is counted, never silent."""

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from prefkit.data import (
    InvalidRowsError,
    ListRecord,
    PairRecord,
    PromptRecord,
    read_feedback,
    read_lists,
    read_pairs,
    read_prompts,
    validate,
)
from prefkit.errors import InputError

U = "user"
A = "assistant"


def msg(role, content):
    return {"role": role, "content": content}


# --------------------------------------------------------------------------- valid formats


def test_standard_explicit_prompt(jsonl):
    path = jsonl([
        {"prompt": "The sky is", "chosen": " blue.", "rejected": " green."},
        {"prompt": "Grass is", "chosen": " green.", "rejected": " blue.", "label": 0.8,
         "margin": 2, "weight": 0.5, "annotator": "ann-1"},
    ])
    records, report = read_pairs(path)
    assert records == [
        PairRecord("The sky is", " blue.", " green."),
        PairRecord("Grass is", " green.", " blue.", label=0.8, margin=2.0, weight=0.5, annotator="ann-1"),
    ]
    assert [r.source for r in records] == [(str(path), 1), (str(path), 2)]
    assert (report.kind, report.rows, report.kept, report.skipped, report.errors) == ("pairs", 2, 2, [], [])


def test_conversational_explicit_prompt(jsonl):
    prompt = [msg("system", "Be brief."), msg(U, "Colour of the sky?")]
    path = jsonl([{"prompt": prompt, "chosen": [msg(A, "Blue.")], "rejected": [msg(A, "Green.")]}])
    (record,), _ = read_pairs(path)
    assert record == PairRecord(prompt, [msg(A, "Blue.")], [msg(A, "Green.")])


def test_standard_implicit_prompt_splits_at_a_word_boundary(jsonl):
    path = jsonl([
        {"chosen": "The sky is blue.", "rejected": "The sky is green."},
        {"chosen": "I like cats", "rejected": "I like cars"},
    ])
    records, report = read_pairs(path)
    assert records == [
        PairRecord("The sky is", " blue.", " green."),
        PairRecord("I like", " cats", " cars"),
    ]
    assert report.implicit_prompts == 2


def test_conversational_implicit_prompt_is_the_shared_message_prefix(jsonl):
    shared = [msg(U, "Hi"), msg(A, "Hello!"), msg(U, "Sky colour?")]
    path = jsonl([{"chosen": [*shared, msg(A, "Blue.")], "rejected": [*shared, msg(A, "Green.")]}])
    (record,), report = read_pairs(path)
    assert record == PairRecord(shared, [msg(A, "Blue.")], [msg(A, "Green.")])
    assert report.implicit_prompts == 1


def test_integer_annotator_ids_become_strings_and_nulls_mean_absent(jsonl):
    path = jsonl([{"prompt": "p", "chosen": "a", "rejected": "b", "annotator": 7, "label": None, "margin": None}])
    (record,), _ = read_pairs(path)
    assert record == PairRecord("p", "a", "b", annotator="7")


def test_ranked_lists(jsonl):
    path = jsonl([
        {"prompt": "Q1", "responses": ["a", "b", "c"], "scores": [1, 3.5, 2]},
        {"responses": ["Say: yes", "Say: no"], "scores": [0, 1]},
    ])
    records, report = read_lists(path)
    assert records == [
        ListRecord("Q1", ["a", "b", "c"], [1.0, 3.5, 2.0]),
        ListRecord("Say:", [" yes", " no"], [0.0, 1.0]),
    ]
    assert (report.kind, report.implicit_prompts, report.ties) == ("lists", 1, 0)


def test_prompt_only_file(jsonl):
    path = jsonl([{"prompt": "Write a poem."}, {"prompt": [msg(U, "Hi")]}])
    records, report = read_prompts(path)
    assert records == [PromptRecord("Write a poem."), PromptRecord([msg(U, "Hi")])]
    assert report.kind == "prompts"


def test_prompts_of_a_pair_file_are_distinct_and_in_order(jsonl):
    path = jsonl([
        {"prompt": "p1", "chosen": "a", "rejected": "b"},
        {"prompt": "p2", "chosen": "a", "rejected": "b"},
        {"prompt": "p1", "chosen": "c", "rejected": "d"},
    ])
    records, report = read_prompts(path)
    assert [r.prompt for r in records] == ["p1", "p2"]
    assert [r.source[1] for r in records] == [1, 2]
    assert report.kept == 2
    assert any("1 rows repeat an earlier prompt" in w for w in report.warnings)


@pytest.mark.parametrize(
    ("row", "kind"),
    [
        ({"prompt": "p", "chosen": "a", "rejected": "b"}, "pairs"),
        ({"chosen": "x a", "rejected": "x b"}, "pairs"),
        ({"prompt": "p", "responses": ["a", "b"], "scores": [1, 0]}, "lists"),
        ({"prompt": "p"}, "prompts"),
    ],
)
def test_read_feedback_detects_the_kind(jsonl, row, kind):
    records, report = read_feedback(jsonl([row]))
    assert report.kind == kind
    assert len(records) == 1


def test_ties_contradictions_and_dedupe_are_counted(jsonl):
    tie = {"prompt": "p", "chosen": "a", "rejected": "b", "label": 0.5}
    path = jsonl([
        {"prompt": "p", "chosen": "a", "rejected": "b"},
        {"prompt": "p", "chosen": "b", "rejected": "a"},  # contradicts line 1
        {"prompt": "p", "chosen": "a", "rejected": "b", "label": 0.0},  # also prefers b
        tie,
        tie,  # exact duplicate of line 4
    ])
    records, report = read_pairs(path, dedupe=True)
    assert len(records) == 4
    assert (report.ties, report.contradictions, report.duplicates) == (1, 2, 1)
    assert any(":2:" in w and "line 1" in w for w in report.warnings)


def test_soft_label_is_not_a_contradiction_of_the_same_direction(jsonl):
    path = jsonl([
        {"prompt": "p", "chosen": "a", "rejected": "b", "label": 0.9},
        {"prompt": "p", "chosen": "b", "rejected": "a", "label": 0.2},  # a preferred again
    ])
    _, report = read_pairs(path)
    assert report.contradictions == 0


def test_list_ties_are_counted(jsonl):
    path = jsonl([
        {"prompt": "p", "responses": ["a", "b", "c"], "scores": [1, 1, 0]},
        {"prompt": "q", "responses": ["a", "b"], "scores": [2, 2]},
        {"prompt": "r", "responses": ["a", "b"], "scores": [2, 1]},
    ])
    _, report = read_lists(path)
    assert report.ties == 2


def test_every_prompt_empty_is_allowed_and_counted(jsonl):
    path = jsonl([
        {"prompt": "", "chosen": "good answer", "rejected": "bad answer"},
        {"chosen": "cats", "rejected": "dogs"},  # implicit split, no shared prefix
    ])
    records, report = read_pairs(path)
    assert [r.prompt for r in records] == ["", ""]
    assert report.empty_prompts == 2


def test_unknown_columns_are_ignored_and_reported(jsonl):
    path = jsonl([{"prompt": "p", "chosen": "a", "rejected": "b", "id": 3, "score_chosen": 9}])
    _, report = read_pairs(path)
    assert report.ignored_columns == ["id", "score_chosen"]
    assert "ignored columns: id, score_chosen" in report.warnings


def test_blank_lines_keep_line_numbers(jsonl):
    path = jsonl([{"prompt": "p", "chosen": "a", "rejected": "b"}, "", "   ", {"prompt": "p", "chosen": 1}])
    with pytest.raises(InvalidRowsError) as caught:
        read_pairs(path)
    assert caught.value.line == 4
    report = validate(path)
    assert report.blank_lines == 2


# --------------------------------------------------------------------------- invalid rows

GOOD_PAIRS = [{"prompt": "p1", "chosen": "a", "rejected": "b"}, {"prompt": "p3", "chosen": "c", "rejected": "d"}]
GOOD_LISTS = [
    {"prompt": "p1", "responses": ["a", "b"], "scores": [1, 0]},
    {"prompt": "p3", "responses": ["c", "d"], "scores": [0, 1]},
]
BAD_ROWS = [
    # (case, kind, line 2 of the file, field, words in the reason)
    ("malformed JSON", "pairs", '{"prompt": "p", "chosen": ', None, "malformed JSON"),
    ("row is an array", "pairs", '["p", "a", "b"]', None, "JSON object"),
    ("row is a number", "pairs", "42", None, "JSON object"),
    ("duplicate key", "pairs", '{"prompt": "p", "chosen": "a", "chosen": "b", "rejected": "c"}', "chosen", "twice"),
    ("missing rejected", "pairs", {"prompt": "p", "chosen": "a"}, "rejected", "missing column"),
    ("chosen is a number", "pairs", {"prompt": "p", "chosen": 3, "rejected": "b"}, "chosen", "got int"),
    ("prompt is null", "pairs", {"prompt": None, "chosen": "a", "rejected": "b"}, "prompt", "null"),
    ("message without role", "pairs",
     {"prompt": [msg(U, "q")], "chosen": [{"content": "a"}], "rejected": [msg(A, "b")]}, "chosen[0].role", "role"),
    ("message without content", "pairs",
     {"prompt": [msg(U, "q")], "chosen": [msg(A, "a")], "rejected": [msg(A, "b"), {"role": A}]},
     "rejected[1].content", "content"),
    ("multimodal content", "pairs",
     {"prompt": [msg(U, "q")], "chosen": [{"role": A, "content": [{"type": "text"}]}], "rejected": [msg(A, "b")]},
     "chosen[0].content", "string"),
    ("message not wrapped in a list", "pairs",
     {"prompt": [msg(U, "q")], "chosen": msg(A, "a"), "rejected": [msg(A, "b")]}, "chosen", "wrap it in a list"),
    ("text prompt with message responses", "pairs",
     {"prompt": "q", "chosen": [msg(A, "a")], "rejected": [msg(A, "b")]}, "chosen", "all strings"),
    ("chosen repeats the prompt", "pairs",
     {"prompt": [msg(U, "q")], "chosen": [msg(U, "q"), msg(A, "a")], "rejected": [msg(A, "b")]},
     "chosen", "starts with the prompt"),
    ("empty chosen", "pairs", {"prompt": "p", "chosen": "", "rejected": "b"}, "chosen", "empty"),
    ("blank rejected", "pairs", {"prompt": "p", "chosen": "a", "rejected": " \n "}, "rejected", "empty"),
    ("empty after the implicit split", "pairs",
     {"chosen": [msg(U, "q"), msg(A, "a")], "rejected": [msg(U, "q"), msg(A, "a"), msg(U, "more")]},
     "chosen", "after splitting"),
    ("identical chosen and rejected", "pairs", {"prompt": "p", "chosen": "same", "rejected": "same"},
     "rejected", "no preference"),
    ("identical but for whitespace", "pairs", {"prompt": "p", "chosen": "a  b", "rejected": " a b"},
     "rejected", "identical"),
    ("label above 1", "pairs", {"prompt": "p", "chosen": "a", "rejected": "b", "label": 1.5}, "label", "[0, 1]"),
    ("label below 0", "pairs", {"prompt": "p", "chosen": "a", "rejected": "b", "label": -0.1}, "label", "[0, 1]"),
    ("label a string", "pairs", {"prompt": "p", "chosen": "a", "rejected": "b", "label": "yes"}, "label", "number"),
    ("label a boolean", "pairs", {"prompt": "p", "chosen": "a", "rejected": "b", "label": True}, "label", "boolean"),
    ("margin NaN", "pairs", '{"prompt": "p", "chosen": "a", "rejected": "b", "margin": NaN}', "margin", "finite"),
    ("weight infinite", "pairs", '{"prompt": "p", "chosen": "a", "rejected": "b", "weight": Infinity}',
     "weight", "finite"),
    ("weight overflowing to infinity", "pairs", '{"prompt": "p", "chosen": "a", "rejected": "b", "weight": 1e999}',
     "weight", "finite"),
    ("negative weight", "pairs", {"prompt": "p", "chosen": "a", "rejected": "b", "weight": -1}, "weight", "[0, inf]"),
    ("annotator a list", "pairs", {"prompt": "p", "chosen": "a", "rejected": "b", "annotator": ["x"]},
     "annotator", "string"),
    ("empty prompt among prompted rows", "pairs", {"prompt": "", "chosen": "a", "rejected": "b"}, "prompt",
     "every row"),
    ("exact duplicate", "pairs", {"prompt": "p1", "chosen": "a", "rejected": "b"}, None, "duplicate of line 1"),
    ("invalid UTF-8", "pairs", b'{"prompt": "caf\xc3", "chosen": "a", "rejected": "b"}', None, "byte offset 15"),
    ("scores not numbers", "lists", {"prompt": "p", "responses": ["a", "b"], "scores": [1, "high"]},
     "scores[1]", "number"),
    ("scores NaN", "lists", '{"prompt": "p", "responses": ["a", "b"], "scores": [NaN, 1]}', "scores[0]", "finite"),
    ("scores not a list", "lists", {"prompt": "p", "responses": ["a", "b"], "scores": 1}, "scores", "list"),
    ("responses and scores differ in length", "lists", {"prompt": "p", "responses": ["a", "b", "c"], "scores": [1, 2]},
     "scores", "2 scores for 3 responses"),
    ("one response", "lists", {"prompt": "p", "responses": ["a"], "scores": [1]}, "responses", "at least 2"),
    ("responses a string", "lists", {"prompt": "p", "responses": "ab", "scores": [1, 2]}, "responses", "list"),
    ("empty response in a list", "lists", {"prompt": "p", "responses": ["a", ""], "scores": [1, 2]},
     "responses[1]", "empty"),
    ("missing scores", "lists", {"prompt": "p", "responses": ["a", "b"]}, "scores", "missing column"),
]


@pytest.mark.parametrize(("case", "kind", "bad", "field", "words"), BAD_ROWS, ids=[c[0] for c in BAD_ROWS])
def test_bad_row_is_named_by_file_line_and_field(jsonl, case, kind, bad, field, words):
    good = GOOD_PAIRS if kind == "pairs" else GOOD_LISTS
    path = jsonl([good[0], bad, good[1]], name="feedback.jsonl")
    reader = read_pairs if kind == "pairs" else read_lists
    with pytest.raises(InvalidRowsError) as caught:
        reader(path)
    err = caught.value
    assert isinstance(err, InputError)
    assert (err.file, err.line, err.field) == (str(path), 2, field)
    message = str(err)
    assert f"feedback.jsonl:2{f' [{field}]' if field else ''}: " in message
    assert words in message
    assert len(err.errors) == 1

    records, report = reader(path, skip_invalid=True)
    assert [r.source[1] for r in records] == [1, 3]
    assert report.kept == 2 and report.rows == 3
    assert [(s.line, s.field) for s in report.skipped] == [(2, field)]
    assert words in report.skipped[0].reason


def test_empty_prompt_only_row_is_invalid(jsonl):
    path = jsonl([{"prompt": "a"}, {"prompt": "  "}])
    with pytest.raises(InvalidRowsError, match=r"data.jsonl:2 \[prompt\]: is empty"):
        read_prompts(path)


def test_ties_can_be_refused(jsonl):
    path = jsonl([GOOD_PAIRS[0], {"prompt": "p", "chosen": "a", "rejected": "b", "label": 0.5}])
    with pytest.raises(InvalidRowsError, match=r":2 \[label\]: is 0.5"):
        read_pairs(path, allow_ties=False)
    lists = jsonl([GOOD_LISTS[0], {"prompt": "p", "responses": ["a", "b", "c"], "scores": [3, 1, 1]}], name="l.jsonl")
    with pytest.raises(InvalidRowsError, match=r":2 \[scores\]: has equal scores"):
        read_lists(lists, allow_ties=False)


def test_all_errors_are_collected_and_the_first_is_raised(jsonl):
    path = jsonl([
        {"prompt": "p", "chosen": 1, "rejected": "b"},
        GOOD_PAIRS[0],
        "{oops",
        {"prompt": "p", "chosen": "a", "rejected": "a"},
    ])
    with pytest.raises(InvalidRowsError) as caught:
        read_pairs(path)
    err = caught.value
    assert [(e.line, e.field) for e in err.errors] == [(1, "chosen"), (3, None), (4, "rejected")]
    assert (err.line, err.field) == (1, "chosen")
    assert "and 2 more invalid rows" in str(err)
    assert "prefkit validate" in str(err)


# --------------------------------------------------------------------------- unusable files


def test_empty_file(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text("")
    with pytest.raises(InputError, match=r"empty.jsonl: file is empty"):
        read_pairs(path)
    path.write_text("\n\n  \n")
    with pytest.raises(InputError, match=r"file is empty: no rows \(3 blank lines\)"):
        read_pairs(path)


def test_all_rows_skipped_is_an_error_not_an_empty_result(jsonl):
    path = jsonl([{"prompt": "p", "chosen": 1, "rejected": "b"}])
    with pytest.raises(InputError, match=r"no valid rows: all 1 rows were skipped"):
        read_pairs(path, skip_invalid=True)


@pytest.mark.parametrize(
    ("row", "words"),
    [
        ({"text": "The sky is blue."}, "carries no preference"),
        ({"completion": "c", "score": 1}, "carries no preference"),
        ({"question": "q", "answer": "a"}, "no known columns"),
    ],
)
def test_files_without_preference_columns(jsonl, row, words):
    with pytest.raises(InputError, match=words) as caught:
        read_feedback(jsonl([row]))
    assert caught.value.line == 1


def test_reading_the_wrong_kind(jsonl):
    path = jsonl([GOOD_LISTS[0]])
    with pytest.raises(InputError, match=r"expected pairs .* holds ranked lists"):
        read_pairs(path)


def test_missing_file_and_unknown_type(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        read_pairs(tmp_path / "nope.jsonl")
    csv = tmp_path / "data.csv"
    csv.write_text("prompt,chosen,rejected\n")
    with pytest.raises(InputError, match=r"unsupported file type '\.csv'"):
        read_pairs(csv)


def test_validate_reports_instead_of_raising(jsonl):
    path = jsonl([GOOD_PAIRS[0], {"prompt": "p", "chosen": 1, "rejected": "b"}, "nope"])
    report = validate(path)
    assert not report.valid
    assert [(e.line, e.field) for e in report.errors] == [(2, "chosen"), (3, None)]
    assert report.kept == 1
    report = validate(path, skip_invalid=True)
    assert report.valid and len(report.skipped) == 2


def test_validate_turns_an_unusable_file_into_one_error(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text("")
    report = validate(path)
    assert not report.valid
    assert [(e.line, e.field, e.reason) for e in report.errors] == [(None, None, "file is empty: no rows")]


# --------------------------------------------------------------------------- Parquet and datasets


def test_parquet_rows_are_numbered_from_one(tmp_path):
    path = tmp_path / "pairs.parquet"
    table = pa.table({
        "prompt": ["p1", "p2", "p3"],
        "chosen": ["a", "same", "c"],
        "rejected": ["b", "same", "d"],
        "label": [None, 0.5, 0.9],
    })
    pq.write_table(table, path)
    with pytest.raises(InvalidRowsError) as caught:
        read_pairs(path)
    assert (caught.value.line, caught.value.field) == (2, "rejected")
    records, report = read_pairs(path, skip_invalid=True)
    assert report.ties == 0 and [s.line for s in report.skipped] == [2]
    assert records == [PairRecord("p1", "a", "b"), PairRecord("p3", "c", "d", label=0.9)]


def test_parquet_conversational_with_missing_struct_fields(tmp_path):
    path = tmp_path / "chat.parquet"
    prompt = [[msg(U, "q")], [{"role": U, "content": "r", "name": "bob"}]]
    pq.write_table(
        pa.table({"prompt": prompt, "chosen": [[msg(A, "a")]] * 2, "rejected": [[msg(A, "b")]] * 2}), path
    )
    records, _ = read_pairs(path)
    assert records[0].prompt == [msg(U, "q")]  # the struct's null "name" is not invented
    assert records[1].prompt == [{"role": U, "content": "r", "name": "bob"}]


def test_parquet_missing_column_fails_once(tmp_path):
    path = tmp_path / "half.parquet"
    pq.write_table(pa.table({"prompt": ["p"] * 5, "chosen": ["a"] * 5}), path)
    with pytest.raises(InputError, match=r"half.parquet \[rejected\]: missing column 'rejected'"):
        read_pairs(path)
    report = validate(path)
    assert len(report.errors) == 1


def test_parquet_with_no_rows_is_empty(tmp_path):
    path = tmp_path / "none.parquet"
    pq.write_table(pa.table({"prompt": pa.array([], pa.string()), "chosen": pa.array([], pa.string()),
                             "rejected": pa.array([], pa.string())}), path)
    with pytest.raises(InputError, match="file is empty"):
        read_pairs(path)


def test_corrupt_parquet(tmp_path):
    path = tmp_path / "bad.parquet"
    path.write_bytes(b"not parquet at all")
    with pytest.raises(InputError, match="not a readable Parquet file"):
        read_pairs(path)


def test_hf_dataset_object_and_save_to_disk_directory(tmp_path):
    from datasets import Dataset, DatasetDict

    dataset = Dataset.from_dict({"prompt": ["p1", "p2"], "chosen": ["a", "c"], "rejected": ["b", "c"]})
    with pytest.raises(InvalidRowsError) as caught:
        read_pairs(dataset)
    assert (caught.value.file, caught.value.line, caught.value.field) == ("<datasets.Dataset>", 2, "rejected")

    good = dataset.select([0])
    assert read_pairs(good)[0] == [PairRecord("p1", "a", "b")]
    good.save_to_disk(str(tmp_path / "saved"))
    records, report = read_pairs(tmp_path / "saved")
    assert records == [PairRecord("p1", "a", "b")]
    assert report.file == str(tmp_path / "saved")

    DatasetDict({"train": good}).save_to_disk(str(tmp_path / "dict"))
    with pytest.raises(InputError, match=r"DatasetDict with splits train: pass one split"):
        read_pairs(tmp_path / "dict")
    (tmp_path / "plain").mkdir()
    with pytest.raises(InputError, match="not one written by"):
        read_pairs(tmp_path / "plain")


def test_rows_dropped_by_the_empty_prompt_rule_are_not_counted(jsonl):
    path = jsonl([GOOD_PAIRS[0], {"prompt": "", "chosen": "a", "rejected": "b", "label": 0.5}])
    records, report = read_pairs(path, skip_invalid=True, max_length=100)
    assert len(records) == 1
    assert (report.ties, report.empty_prompts, report.truncated) == (0, 0, [])
    assert report.sequence_tokens.count == 2
    assert [(s.line, s.field) for s in report.skipped] == [(2, "prompt")]


def test_a_list_scoring_the_same_response_twice_differently_is_a_warning(jsonl):
    path = jsonl([{"prompt": "p", "responses": ["a", "b", " a"], "scores": [1, 2, 3]}])
    records, report = read_lists(path)
    assert len(records) == 1 and report.contradictions == 1
    assert "[responses[2]]: same response" in report.warnings[0]
