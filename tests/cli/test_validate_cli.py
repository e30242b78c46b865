"""`prefkit validate`: exit codes, the printed report and the --json object."""

import json

import pytest

from prefkit.cli.main import main


def write(path, rows):
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


GOOD = [
    {"prompt": "The sky is", "chosen": " blue.", "rejected": " green."},
    {"prompt": "Grass is", "chosen": " green.", "rejected": " red.", "label": 0.5},
]
BAD = [
    GOOD[0],
    {"prompt": "p", "chosen": 3, "rejected": "b"},
    "{not json",
    {"prompt": "p", "chosen": "same", "rejected": "same"},
    GOOD[0],
]


def run_json(capsys, *args):
    code = main(["validate", *args, "--json"])
    out = capsys.readouterr().out
    return code, json.loads(out)  # exactly one JSON object on stdout


def test_valid_file_exits_0(tmp_path, capsys):
    path = write(tmp_path / "good.jsonl", GOOD)
    code, info = run_json(capsys, "--data", str(path))
    assert code == 0
    assert info["valid"] is True
    assert (info["file"], info["kind"], info["rows"], info["kept"], info["ties"]) == (str(path), "pairs", 2, 2, 1)
    assert info["errors"] == [] and info["duplicates"] == 0 and info["too_long"] == 0
    assert info["tokens"]["sequence"]["max"] == 3 + 2 + 2  # The sky is | blue . | bos, eos


def test_invalid_file_lists_every_error_and_exits_1(tmp_path, capsys):
    path = write(tmp_path / "bad.jsonl", BAD)
    code, info = run_json(capsys, "--data", str(path))
    assert code == 1 and info["valid"] is False
    assert [(e["line"], e["field"]) for e in info["errors"]] == [(2, "chosen"), (3, None), (4, "rejected"), (5, None)]
    assert "duplicate of line 1" in info["errors"][3]["reason"]
    assert info["n_errors"] == 4 and info["duplicates"] == 1

    assert main(["validate", "--data", str(path)]) == 1
    out = capsys.readouterr().out
    for where in ("bad.jsonl:2 [chosen]:", "bad.jsonl:3: malformed JSON", "bad.jsonl:4 [rejected]:", "bad.jsonl:5:"):
        assert where in out
    assert "invalid: 4 error(s)" in out


def test_skip_invalid_and_dedupe_make_it_usable(tmp_path, capsys):
    path = write(tmp_path / "bad.jsonl", BAD)
    code, info = run_json(capsys, "--data", str(path), "--skip-invalid", "--dedupe")
    assert code == 0
    assert info["kept"] == 1 and info["n_skipped"] == 3 and info["duplicates"] == 1
    assert [s["line"] for s in info["skipped"]] == [2, 3, 4]


def test_max_errors_caps_the_list_not_the_count(tmp_path, capsys):
    rows = [{"prompt": f"p{i}", "chosen": i, "rejected": "b"} for i in range(7)]
    path = write(tmp_path / "many.jsonl", rows)
    code, info = run_json(capsys, "--data", str(path), "--max-errors", "3")
    assert code == 1 and info["n_errors"] == 7 and len(info["errors"]) == 3
    main(["validate", "--data", str(path), "--max-errors", "3"])
    assert "... and 4 more" in capsys.readouterr().out


def test_bad_arguments_exit_2(tmp_path, capsys):
    path = write(tmp_path / "good.jsonl", GOOD)
    for flag in ("--max-length", "--max-errors"):
        with pytest.raises(SystemExit) as caught:
            main(["validate", "--data", str(path), flag, "0"])
        assert caught.value.code == 2
        assert "must be a positive integer" in capsys.readouterr().err


def test_over_length_rows(tmp_path, capsys):
    path = write(tmp_path / "long.jsonl", GOOD)  # longest sequences: 7 and 6 tokens
    code, info = run_json(capsys, "--data", str(path), "--max-length", "6")
    assert code == 0 and info["too_long"] == 1 and info["too_long_lines"] == [1]
    code, info = run_json(capsys, "--data", str(path), "--max-length", "6", "--truncation", "error")
    assert code == 1 and [(e["line"], e["field"]) for e in info["errors"]] == [(1, "chosen")]
    code, info = run_json(capsys, "--data", str(path), "--max-length", "5", "--truncation", "error")
    assert [(e["line"], e["field"]) for e in info["errors"]] == [(1, "chosen"), (2, "chosen")]
    # bos + "The sky is" fill max_length 4: the prompt itself leaves no room (as train counts it)
    code, info = run_json(capsys, "--data", str(path), "--max-length", "4", "--truncation", "error")
    assert [(e["line"], e["field"]) for e in info["errors"]] == [(1, "prompt"), (2, "chosen")]


def test_no_ties(tmp_path, capsys):
    path = write(tmp_path / "good.jsonl", GOOD)
    code, info = run_json(capsys, "--data", str(path), "--no-ties")
    assert code == 1 and info["errors"] == [{"line": 2, "field": "label", "reason": info["errors"][0]["reason"]}]


def test_lists_and_prompts(tmp_path, capsys):
    lists = write(tmp_path / "lists.jsonl", [{"prompt": "q", "responses": ["a", "b"], "scores": [1, 2]}])
    assert run_json(capsys, "--data", str(lists))[1]["kind"] == "lists"
    prompts = write(tmp_path / "prompts.jsonl", [{"prompt": "q"}])
    assert run_json(capsys, "--data", str(prompts))[1]["kind"] == "prompts"


def test_unusable_file_exits_1_and_bad_path_exits_2(tmp_path, capsys):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    code, info = run_json(capsys, "--data", str(empty))
    assert code == 1 and info["errors"] == [{"line": None, "field": None, "reason": "file is empty: no rows"}]
    code = main(["validate", "--data", str(tmp_path / "missing.jsonl"), "--json"])
    captured = capsys.readouterr()
    assert code == 2
    assert "no such file" in json.loads(captured.out)["error"]
    assert "missing.jsonl" in captured.err


def test_parquet(tmp_path, capsys):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "pairs.parquet"
    pq.write_table(pa.table({"prompt": ["a", "b"], "chosen": ["x", "y"], "rejected": ["z", "y"]}), path)
    code, info = run_json(capsys, "--data", str(path))
    assert code == 1 and info["errors"][0]["line"] == 2 and info["errors"][0]["field"] == "rejected"


def test_local_tokenizer(tmp_path, capsys):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "</s>": 1, "the": 2, "sky": 3, "is": 4, "blue": 5, "green": 6}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="</s>", unk_token="<unk>").save_pretrained(
        str(tmp_path / "tok")
    )
    path = write(tmp_path / "d.jsonl", [{"prompt": "the sky is", "chosen": "blue", "rejected": "green"}])
    code, info = run_json(capsys, "--data", str(path), "--tokenizer", str(tmp_path / "tok"))
    assert code == 0
    assert info["tokenizer"] == str(tmp_path / "tok")
    assert info["tokens"]["sequence"]["max"] == 3 + 1 + 1  # no bos; eos appended to the response


def test_a_dataset_dict_split_and_a_column_map(tmp_path, capsys):
    from datasets import Dataset, DatasetDict

    rows = [{"q": "The sky is", "good": " blue.", "bad": " green."}]
    DatasetDict({"train": Dataset.from_list(rows), "test": Dataset.from_list(rows)}).save_to_disk(str(tmp_path / "dd"))
    code, info = run_json(capsys, "--data", str(tmp_path / "dd"), "--split", "test",
                          "--column", "prompt=q", "--column", "chosen=good", "--column", "rejected=bad")
    assert code == 0 and info["kind"] == "pairs" and info["kept"] == 1
    assert info["file"] == f"{tmp_path / 'dd'}[test]"
    assert main(["validate", "--data", str(tmp_path / "dd"), "--split", "dev"]) == 2
    assert "splits: train, test" in capsys.readouterr().err
    assert main(["validate", "--data", str(tmp_path / "dd"), "--column", "chosen=missing"]) == 2
    assert "data.columns.chosen names column 'missing', which is not there" in capsys.readouterr().err


def test_unpaired_files_are_validated(tmp_path, capsys):
    path = write(tmp_path / "kto.jsonl", [{"prompt": "p", "completion": "c", "label": True},
                                          {"prompt": "p", "completion": "d", "label": "no"}])
    code, info = run_json(capsys, "--data", str(path))
    assert code == 1 and info["kind"] == "unpaired"
    assert [(e["line"], e["field"]) for e in info["errors"]] == [(2, "label")]
