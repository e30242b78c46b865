"""Bad input at the command line: unpaired data for a paired method, splits and column maps."""

from __future__ import annotations

import json

from prefkit.cli.main import main

TINY = ["tiny.hidden_size=16", "tiny.layers=1", "tiny.heads=2", "train.batch_size=2", "train.max_length=32",
        "train.steps=1"]


def test_an_unpaired_file_given_to_a_paired_method(tmp_path, capsys):
    data = tmp_path / "kto.jsonl"
    data.write_text(json.dumps({"prompt": "p", "completion": "c", "label": True}) + "\n")
    assert main(["train", "--method", "dpo", "--data", str(data), "--model", "tiny", "--out", str(tmp_path / "r"),
                 *TINY]) == 2
    err = capsys.readouterr().err
    assert "holds unpaired feedback" in err and "kto" in err


def test_train_reads_a_split_and_a_column_map(tmp_path, capsys):
    from datasets import Dataset, DatasetDict

    rows = [{"q": f"p {i}", "good": f"yes {i}", "bad": f"no {i}"} for i in range(4)]
    DatasetDict({"train": Dataset.from_list(rows), "test": Dataset.from_list(rows[:2])}).save_to_disk(
        str(tmp_path / "dd"))
    columns = ["data.columns.prompt=q", "data.columns.chosen=good", "data.columns.rejected=bad"]
    assert main(["train", "--method", "dpo", "--data", str(tmp_path / "dd"), "--model", "tiny", "--out",
                 str(tmp_path / "ok"), *TINY, *columns]) == 0
    assert json.loads((tmp_path / "ok" / "metrics.json").read_text())["examples"] == 4
    assert main(["train", "--method", "dpo", "--data", str(tmp_path / "dd"), "--model", "tiny", "--out",
                 str(tmp_path / "bad"), *TINY, *columns, "data.split=validation"]) == 2
    assert "without a 'validation' split (splits: train, test)" in capsys.readouterr().err
    assert main(["rm", "train", "--data", str(tmp_path / "dd"), "--model", "tiny", "--out", str(tmp_path / "rm"),
                 "--json", *TINY, *columns]) == 0
    metrics = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert metrics["pairs"] == 4 and metrics["eval/n"] == 2  # the test split is the held-out data
