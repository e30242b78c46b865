"""Votes out: the TRL export, its reproducibility, and ``studio:DIR`` through prefkit's readers,
``prefkit validate`` and ``prefkit train``."""

from __future__ import annotations

import json

import pytest

from prefkit.studio import queue
from prefkit.studio.annotators import add_annotator
from prefkit.studio.export import export_jsonl, pair_records, vote_rows


def _voted(make_store, choices=("left", "right", "tie", "both_bad", "left")):
    store, directory = make_store(len(choices))
    alice, _ = add_annotator(store, "alice")
    verdicts = []
    for i, choice in enumerate(choices):
        task = queue.next_task(store, alice.id)
        result = queue.vote(store, alice.id, task.assignment_id, choice, critique=f"note {i}", confidence=3,
                            duration_ms=500 + i, nonce=f"nonce-{i:04d}")
        verdicts.append((task, choice, result.verdict))
    return store, directory, verdicts


def test_export_rows_are_trl_pairs_with_the_studio_columns(make_store, tmp_path):
    store, _, verdicts = _voted(make_store)
    rows = vote_rows(store)
    assert [r["verdict"] for r in rows] == [v for _, _, v in verdicts]
    assert [r["label"] for r in rows] == [1.0, 1.0, 0.5, 0.5, 1.0]
    for row, (task, choice, _) in zip(rows, verdicts):
        assert row["annotator"] == "alice" and row["critique"].startswith("note") and row["confidence"] == 3
        if choice in ("left", "right"):
            shown = task.left if choice == "left" else task.right
            assert row["chosen"] == shown and row["position"] == choice  # the clicked response is chosen
    assert [r["prompt"] for r in vote_rows(store, ties=False)] == [rows[i]["prompt"] for i in (0, 1, 4)]


def test_export_file_is_reproducible_and_reads_back(make_store, tmp_path):
    from prefkit.data import read_pairs

    store, _, _ = _voted(make_store)
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    assert export_jsonl(store, first) == 5
    export_jsonl(store, second)
    assert first.read_bytes() == second.read_bytes()
    records, report = read_pairs(str(first))
    assert len(records) == 5 and report.ties == 2 and "critique" in report.ignored_columns
    assert json.loads(first.read_text().splitlines()[0])["vote_id"] == 1


def test_nothing_to_export_is_an_error(make_store, tmp_path):
    from prefkit.studio.errors import StudioError

    store, _ = make_store(2)
    with pytest.raises(StudioError, match="no votes"):
        export_jsonl(store, tmp_path / "x.jsonl")
    assert not (tmp_path / "x.jsonl").exists()


def test_read_pairs_reads_the_store_directly(make_store):
    from prefkit.data import read_pairs, read_prompts

    store, directory, _ = _voted(make_store)
    records, report = read_pairs(f"studio:{directory}")
    assert records == pair_records(store)
    assert report.file == f"studio:{directory}" and report.ties == 2
    assert records[0].source == (f"studio:{directory}", 1) and records[0].annotator == "alice"
    prompts, _ = read_prompts(f"studio:{directory}")
    assert len(prompts) == 5


def test_studio_source_errors(tmp_path, make_store):
    from prefkit.data import read_pairs
    from prefkit.errors import InputError

    with pytest.raises(InputError, match="no studio project here"):
        read_pairs(f"studio:{tmp_path / 'none'}")
    _, directory = make_store(2, name="empty")
    with pytest.raises(InputError, match="no votes yet"):
        read_pairs(f"studio:{directory}")


def test_validate_and_train_read_studio_dir(make_store, tmp_path, capsys):
    from prefkit.cli.main import main

    _, directory, _ = _voted(make_store, ("left", "right", "left", "right", "left", "right"))
    assert main(["validate", "--data", f"studio:{directory}", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["kept"] == 6
    out = tmp_path / "run"
    code = main(["train", "--method", "dpo", "--data", f"studio:{directory}", "--model", "tiny", "--out", str(out),
                 "--json", "train.steps=2", "train.batch_size=2", "tiny.hidden_size=16", "tiny.layers=1",
                 "tiny.heads=2", "train.max_length=32"])
    assert code == 0
    metrics = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert metrics["steps"] == 2
