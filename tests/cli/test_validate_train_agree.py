"""`prefkit validate`, `prefkit train` and `prefkit rm train` agree on a file: the same rows are
refused with the same file, line and field; a batch larger than the data is refused."""

import json

import pytest

from prefkit.cli.main import main
from prefkit.data import write_jsonl
from tests.engine.conftest import make_pairs

TINY = ["tiny.hidden_size=16", "tiny.layers=1", "tiny.heads=2", "train.steps=1", "train.batch_size=2",
        "train.threads=1"]


def write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def validate_errors(path, capsys, *args):
    main(["validate", "--data", str(path), "--json", *args])
    report = json.loads(capsys.readouterr().out)
    return [(e["line"], e["field"]) for e in report["errors"]]


def error_line(capsys):
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


@pytest.fixture
def good_rows():
    return [r.to_json() for r in make_pairs(4)]


def test_a_non_assistant_response_is_refused_alike(tmp_path, capsys, good_rows):
    bad = {"prompt": [{"role": "user", "content": "q"}], "chosen": [{"role": "user", "content": "a"}],
           "rejected": [{"role": "assistant", "content": "b"}]}
    path = write(tmp_path / "data.jsonl", [*good_rows, bad])
    assert validate_errors(path, capsys) == [(5, "chosen[0].role")]
    assert main(["train", "--method", "dpo", "--data", str(path), "--out", str(tmp_path / "a"), *TINY]) == 2
    assert f"{path}:5 [chosen[0].role]: is 'user'" in error_line(capsys)
    assert main(["rm", "train", "--data", str(path), "--out", str(tmp_path / "b"), *TINY]) == 2
    assert f"{path}:5 [chosen[0].role]" in error_line(capsys)
    # skip_invalid skips it in training, as validate --skip-invalid reports
    assert main(["train", "--method", "dpo", "--data", str(path), "--out", str(tmp_path / "c"), *TINY,
                 "data.skip_invalid=true"]) == 0
    capsys.readouterr()


@pytest.mark.parametrize("method", ["dpo", "sft"])
def test_an_over_long_row_names_the_same_field_in_validate_and_train(tmp_path, capsys, good_rows, method):
    long_rejected = {"prompt": "a b", "chosen": "w " * 5, "rejected": "w " * 30}
    path = write(tmp_path / "data.jsonl", [*good_rows, long_rejected])
    assert validate_errors(path, capsys, "--max-length", "16", "--truncation", "error") == [(5, "rejected")]
    args = ["--data", str(path), *TINY, "train.max_length=16", "train.truncation=error"]
    assert main(["train", "--method", "dpo", "--out", str(tmp_path / "a"), *args]) == 2
    assert f"{path}:5 [rejected]: prompt + rejected is at least" in error_line(capsys)
    if method == "sft":  # SFT trains on chosen only
        path = write(tmp_path / "sft.jsonl", [*good_rows, {"prompt": "a b", "chosen": "w " * 30, "rejected": "x"}])
        assert main(["train", "--method", "sft", "--out", str(tmp_path / "s"), "--data", str(path), *TINY,
                     "train.max_length=16", "train.truncation=error"]) == 2
        assert f"{path}:5 [chosen]" in error_line(capsys)


def test_rm_train_honours_truncation_error_naming_file_line_and_field(tmp_path, capsys, good_rows):
    long_rejected = {"prompt": "a b", "chosen": "w " * 5, "rejected": "w " * 30}
    path = write(tmp_path / "data.jsonl", [*good_rows, long_rejected])
    for kind, expected in (("bt", "prompt + rejected is"), ("pairpm", "prompt + chosen + rejected is at least")):
        out = tmp_path / kind
        assert main(["rm", "train", "--kind", kind, "--data", str(path), "--out", str(out), *TINY,
                     "train.max_length=16", "train.truncation=error"]) == 2
        assert f"{path}:5 [rejected]: {expected}" in error_line(capsys)
        assert not out.exists()
    assert main(["rm", "train", "--data", str(path), "--out", str(tmp_path / "t"), *TINY, "train.max_length=16"]) == 0
    capsys.readouterr()


def test_a_batch_larger_than_the_data_is_refused_naming_the_key(tmp_path, capsys):
    path = tmp_path / "data.jsonl"
    write_jsonl(make_pairs(3), path)
    for command in (["train", "--method", "dpo"], ["rm", "train"]):
        out = tmp_path / command[0]
        assert main([*command, "--data", str(path), "--out", str(out), *TINY, "train.batch_size=8"]) == 2
        err = error_line(capsys)
        assert f"{path} [train.batch_size]: train.batch_size=8 is larger than the 3 training" in err
        assert "set train.batch_size to at most 3" in err
        assert not out.exists()
