"""Writers: JSONL and Parquet round trips (strings and message lists), atomic writes."""

import json

import pytest

from prefkit.data import (
    ListRecord,
    PairRecord,
    PromptRecord,
    read_lists,
    read_pairs,
    read_prompts,
    to_hf_dataset,
    write_jsonl,
    write_parquet,
)


def msg(role, content):
    return {"role": role, "content": content}


STRING_PAIRS = [
    PairRecord("The sky is", " blue.", " green."),
    PairRecord("Ünïcödé ✓", "ja", "nein", label=0.5, margin=1.5, weight=2.0, annotator="a1"),
    PairRecord("", "x", "y", label=0.25),
]
CHAT_PAIRS = [
    PairRecord([msg("system", "Be brief."), msg("user", "Sky?")], [msg("assistant", "Blue.")], [msg("assistant", "Green.")]),
    PairRecord([msg("user", "Hi")], [msg("assistant", "Hello"), msg("assistant", "!")],
               [msg("assistant", "Go away")], label=0.9),
]
LISTS = [ListRecord("Q", ["a", "b", "c"], [1.0, -2.5, 3.0]), ListRecord("R", ["d", "e"], [0.0, 0.0])]
PROMPTS = [PromptRecord("Write a poem."), PromptRecord("Tell a joke.")]
WRITERS = {"jsonl": write_jsonl, "parquet": write_parquet}


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
@pytest.mark.parametrize("records", [STRING_PAIRS[:2], CHAT_PAIRS], ids=["strings", "messages"])
def test_pairs_round_trip(tmp_path, fmt, records):
    path = WRITERS[fmt](records, tmp_path / f"pairs.{fmt}")
    back, report = read_pairs(path)
    assert back == records
    assert report.kept == len(records)


def test_unconditional_pairs_round_trip(tmp_path):
    records = [PairRecord("", "x", "y", label=0.25), PairRecord("", "z", "w")]
    for fmt, writer in WRITERS.items():
        assert read_pairs(writer(records, tmp_path / f"u.{fmt}"))[0] == records


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_lists_and_prompts_round_trip(tmp_path, fmt):
    assert read_lists(WRITERS[fmt](LISTS, tmp_path / f"lists.{fmt}"))[0] == LISTS
    assert read_prompts(WRITERS[fmt](PROMPTS, tmp_path / f"prompts.{fmt}"))[0] == PROMPTS


def test_jsonl_uses_trl_columns_and_omits_defaults(tmp_path):
    path = write_jsonl(STRING_PAIRS[:2], tmp_path / "out" / "pairs.jsonl")
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert rows[0] == {"prompt": "The sky is", "chosen": " blue.", "rejected": " green."}
    assert rows[1]["annotator"] == "a1" and rows[1]["label"] == 0.5
    assert "Ünïcödé ✓" in path.read_text(encoding="utf-8")  # not \u-escaped


def test_parquet_has_one_schema_with_nulls_for_unset_fields(tmp_path):
    import pyarrow.parquet as pq

    table = pq.read_table(write_parquet(STRING_PAIRS, tmp_path / "p.parquet"))
    assert table.column_names == ["prompt", "chosen", "rejected", "label", "margin", "weight", "annotator"]
    assert table.column("margin").to_pylist() == [None, 1.5, None]
    assert table.column("label").to_pylist() == [1.0, 0.5, 0.25]


def test_parquet_refuses_a_column_mixing_strings_and_messages(tmp_path):
    with pytest.raises(ValueError, match="column 'prompt' cannot be stored in Parquet"):
        write_parquet([STRING_PAIRS[0], CHAT_PAIRS[0]], tmp_path / "mixed.parquet")
    assert list(tmp_path.iterdir()) == []  # no partial file, no temporary left behind


def test_failed_write_leaves_the_old_file_untouched(tmp_path):
    path = write_jsonl(STRING_PAIRS[:1], tmp_path / "pairs.jsonl")
    before = path.read_bytes()
    bad = [STRING_PAIRS[1], PairRecord("p", "a", "b", label=float("nan"))]
    with pytest.raises(ValueError, match=r"record 1: .*must be finite"):
        write_jsonl(bad, path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pairs.jsonl"]


def test_refuses_empty_and_mixed_record_types(tmp_path):
    with pytest.raises(ValueError, match="no records"):
        write_jsonl([], tmp_path / "e.jsonl")
    with pytest.raises(ValueError, match="must all be PairRecord"):
        write_jsonl([STRING_PAIRS[0], LISTS[0]], tmp_path / "m.jsonl")


def test_to_hf_dataset_reads_back():
    dataset = to_hf_dataset(CHAT_PAIRS)
    assert dataset.column_names == ["prompt", "chosen", "rejected", "label"]
    assert read_pairs(dataset)[0] == CHAT_PAIRS
