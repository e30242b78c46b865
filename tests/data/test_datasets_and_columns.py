"""Datasets as users have them: DatasetDict splits, hub names, column maps (docs/data.md)."""

from __future__ import annotations

import json

import pytest
from datasets import Dataset, DatasetDict

from prefkit.config import DataConfig, RunConfig, load
from prefkit.data import (
    DataSource,
    PairRecord,
    eval_source,
    read_pairs,
    read_prompts,
    train_source,
    validate,
)
from prefkit.errors import InputError

TRAIN = [{"prompt": f"p{i}", "chosen": f"good {i}", "rejected": f"bad {i}"} for i in range(4)]
TEST = [{"prompt": f"q{i}", "chosen": f"fine {i}", "rejected": f"poor {i}"} for i in range(2)]


@pytest.fixture
def dataset_dict(tmp_path):
    def make(splits: dict[str, list[dict]], name: str = "dd"):
        path = tmp_path / name
        DatasetDict({k: Dataset.from_list(v) for k, v in splits.items()}).save_to_disk(str(path))
        return path

    return make


def test_a_dataset_dict_directory_trains_on_train_and_holds_out_test(dataset_dict):
    path = dataset_dict({"train": TRAIN, "test": TEST})
    data = DataConfig(path=str(path))
    records, report = read_pairs(train_source(data))
    assert [r.prompt for r in records] == [f"p{i}" for i in range(4)]
    assert report.file == f"{path}[train]" and records[0].source == (f"{path}[train]", 1)
    held_out = eval_source(data)
    assert held_out is not None and held_out.split == "test"
    assert [r.prompt for r in read_pairs(held_out)[0]] == ["q0", "q1"]


def test_named_splits_and_the_default_without_a_test_split(dataset_dict):
    path = dataset_dict({"train": TRAIN, "validation": TEST, "extra": TRAIN[:1]})
    assert eval_source(DataConfig(path=str(path))) is None  # no 'test' split: no held-out data
    data = DataConfig(path=str(path), split="extra", eval_split="validation")
    assert [r.prompt for r in read_pairs(train_source(data))[0]] == ["p0"]
    assert [r.prompt for r in read_pairs(eval_source(data))[0]] == ["q0", "q1"]


def test_a_missing_split_is_an_error_listing_the_splits(dataset_dict):
    path = dataset_dict({"validation": TEST, "other": TRAIN})
    with pytest.raises(InputError, match=r"without a 'train' split \(splits: validation, other\); set data.split"):
        read_pairs(train_source(DataConfig(path=str(path))))
    with pytest.raises(InputError, match=r"no split 'test'|without a 'test' split"):
        read_pairs(train_source(DataConfig(path=str(path), split="test")))
    with pytest.raises(InputError, match=r"data\.eval_split") as caught:
        eval_source(DataConfig(path="x.jsonl", eval_path=str(path)))
    assert "validation, other" in str(caught.value)


def test_a_split_for_a_single_file_is_refused(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in TRAIN) + "\n")
    with pytest.raises(InputError, match=r"data.split='train' applies to a DatasetDict"):
        read_pairs(train_source(DataConfig(path=str(path), split="train")))
    with pytest.raises(InputError, match=r"data\.eval_split=.test. needs a DatasetDict"):
        eval_source(DataConfig(path=str(path), eval_split="test"))
    assert eval_source(DataConfig(path=str(path))) is None


def test_the_training_split_cannot_be_the_held_out_split(dataset_dict):
    path = dataset_dict({"train": TRAIN, "test": TEST})
    with pytest.raises(InputError, match="held-out data must be another split"):
        eval_source(DataConfig(path=str(path), eval_split="train"))


def test_in_memory_dataset_dicts_and_the_old_error_without_a_split():
    dd = DatasetDict({"train": Dataset.from_list(TRAIN)})
    assert len(read_pairs(DataSource(dd))[0]) == 4
    with pytest.raises(InputError, match="DatasetDict with splits train"):
        read_pairs(dd)


def test_prompts_and_validate_read_a_split(dataset_dict):
    path = dataset_dict({"train": TRAIN, "test": TEST})
    prompts, _ = read_prompts(DataSource(str(path), split="test"))
    assert [p.prompt for p in prompts] == ["q0", "q1"]
    report = validate(DataSource(str(path), split="test"))
    assert report.valid and report.kept == 2


# ------------------------------------------------------------------------------- hub names


def test_hub_names_go_to_datasets_load_dataset(monkeypatch):
    import datasets

    calls = []

    def fake(name):
        calls.append(name)
        return DatasetDict({"train": Dataset.from_list(TRAIN), "test": Dataset.from_list(TEST)})

    monkeypatch.setattr(datasets, "load_dataset", fake)
    data = DataConfig(path="someone/prefs")
    assert data.path == "someone/prefs"  # not a local path: kept as given
    records, report = read_pairs(train_source(data))
    assert len(records) == 4 and report.file == "someone/prefs[train]"
    assert [r.prompt for r in read_pairs(eval_source(data))[0]] == ["q0", "q1"]
    assert set(calls) == {"someone/prefs"}


def test_a_hub_name_without_network_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(InputError, match="not a local file or directory, and not loadable as a Hugging Face hub"):
        read_pairs(DataSource("prefkit-test/no-such-dataset-anywhere"))


def test_a_missing_file_is_still_no_such_file(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        read_pairs(DataSource(str(tmp_path / "missing.jsonl")))


# ------------------------------------------------------------------------------ column maps

OTHER = [{"question": "p", "answer_good": "yes", "answer_bad": "no", "score": 1}]


def test_a_column_map_renames_jsonl_and_parquet_and_datasets(tmp_path):
    columns = {"prompt": "question", "chosen": "answer_good", "rejected": "answer_bad"}
    jsonl = tmp_path / "other.jsonl"
    jsonl.write_text(json.dumps(OTHER[0]) + "\n")
    parquet = tmp_path / "other.parquet"
    Dataset.from_list(OTHER).to_parquet(str(parquet))
    for where in (str(jsonl), str(parquet), Dataset.from_list(OTHER)):
        records, report = read_pairs(DataSource(where, columns=columns))
        assert records == [PairRecord("p", "yes", "no")]
        assert report.ignored_columns == ["score"]


def test_column_maps_from_the_config(tmp_path):
    jsonl = tmp_path / "other.jsonl"
    jsonl.write_text(json.dumps(OTHER[0]) + "\n")
    cfg = load(RunConfig, None, [f"data.path={jsonl}", "data.columns.chosen=answer_good",
                                 "data.columns.rejected=answer_bad", "data.columns.prompt=question"])
    assert read_pairs(train_source(cfg.data))[0] == [PairRecord("p", "yes", "no")]


def test_a_column_map_naming_a_missing_column(tmp_path):
    jsonl = tmp_path / "other.jsonl"
    jsonl.write_text(json.dumps(OTHER[0]) + "\n")
    for where in (str(jsonl), Dataset.from_list(OTHER)):
        with pytest.raises(InputError, match=r"data.columns.chosen names column 'good', which is not there "
                                             r"\(columns: question, answer_good, answer_bad, score\)"):
            read_pairs(DataSource(where, columns={"chosen": "good"}))
    # validate reports it as the file's error instead of raising
    report = validate(DataSource(str(jsonl), columns={"chosen": "good"}))
    assert not report.valid and "data.columns.chosen" in str(report.errors[0])


def test_a_later_row_without_a_mapped_column_is_that_rows_error(tmp_path):
    jsonl = tmp_path / "other.jsonl"
    jsonl.write_text(json.dumps(OTHER[0]) + "\n" + json.dumps({"question": "q", "answer_bad": "no"}) + "\n")
    columns = {"prompt": "question", "chosen": "answer_good", "rejected": "answer_bad"}
    records, report = read_pairs(DataSource(str(jsonl), columns=columns), skip_invalid=True)
    assert len(records) == 1
    assert "missing column 'answer_good' (data.columns.chosen)" in str(report.skipped[0])


def test_a_column_map_that_would_merge_two_columns_is_refused(tmp_path):
    rows = [{"chosen": "a", "better": "b", "rejected": "c"}]
    with pytest.raises(InputError, match="also has a 'chosen' column"):
        read_pairs(DataSource(Dataset.from_list(rows), columns={"chosen": "better"}))
    # swapping two columns is fine
    records, _ = read_pairs(DataSource(Dataset.from_list([{"prompt": "p", "chosen": "x", "rejected": "y"}]),
                                       columns={"chosen": "rejected", "rejected": "chosen"}))
    assert records == [PairRecord("p", "y", "x")]


@pytest.mark.parametrize(
    ("columns", "message"),
    [({"good": "answer"}, "data.columns.good: not a prefkit column"),
     ({"chosen": ""}, "data.columns.chosen must be a column name"),
     ({"chosen": "a", "rejected": "a"}, "both name column 'a'")],
)
def test_bad_column_maps_in_the_config(columns, message):
    with pytest.raises(ValueError, match=message):
        DataConfig(columns=columns)
