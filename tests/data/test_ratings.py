"""Ratings files (rated lists and single ratings), their checks, and binarisation into pairs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from prefkit.cli.main import main
from prefkit.data import InvalidRowsError, ListRecord
from prefkit.data.binarize import best_vs_worst, binarize, group_ratings
from prefkit.data.critiques import read_critiques
from prefkit.data.ratings import (
    RatingRecord,
    RatingsRecord,
    detect_feedback_kind,
    parse_scale,
    read_ratings,
    validate_ratings,
)

ROW = {"prompt": "p", "completions": ["a", "b", "c"], "ratings": [5, 2, 9]}


def test_rated_lists_and_single_ratings_read_with_their_annotators(jsonl):
    records, report = read_ratings(jsonl([ROW, {**ROW, "prompt": "q", "annotator": "gpt"}]), scale=(1, 10))
    assert records[0] == RatingsRecord("p", ["a", "b", "c"], [5.0, 2.0, 9.0])
    assert records[1].annotator == "gpt" and report.kind == "ratings" and report.kept == 2
    assert records[0].to_list() == ListRecord("p", ["a", "b", "c"], [5.0, 2.0, 9.0])
    singles, report = read_ratings(jsonl([{"prompt": "p", "completion": "a", "rating": 3},
                                          {"prompt": "p", "completion": "b", "rating": 4.5}], "one.jsonl"))
    assert singles == [RatingRecord("p", "a", 3.0), RatingRecord("p", "b", 4.5)] and report.kind == "rating"
    assert any("no rating scale declared" in w for w in report.warnings)


@pytest.mark.parametrize("row, field, reason", [
    ({**ROW, "ratings": [5, 2]}, "ratings", "2 ratings for 3 completions"),
    ({**ROW, "ratings": [5, 2, 11]}, "ratings[2]", "outside the declared scale 1..10"),
    ({**ROW, "ratings": [5, 2, 0]}, "ratings[2]", "outside the declared scale 1..10"),
    ({**ROW, "ratings": [5, "2", 9]}, "ratings[1]", "must be a number"),
    ({**ROW, "ratings": [5, float("nan"), 9]}, "ratings[1]", "finite"),
    ({**ROW, "completions": ["a", " ", "c"]}, "completions[1]", "is empty"),
    ({"completions": ["a"], "ratings": [1]}, "prompt", "missing column"),
    ({**ROW, "ratings": 5}, "ratings", "must be a list"),
])
def test_bad_rating_rows_name_line_and_field(jsonl, row, field, reason):
    path = jsonl([ROW, row])
    with pytest.raises(InvalidRowsError) as info:
        read_ratings(path, scale=(1, 10))
    error = info.value.errors[0]
    assert (error.line, error.field) == (2, field) and reason in error.reason
    assert f"{path}:2 [{field}]" in str(info.value)


def test_integer_ratings_skip_invalid_and_duplicates(jsonl):
    path = jsonl([ROW, {**ROW, "prompt": "q", "ratings": [1.5, 2, 3]}, ROW])
    with pytest.raises(InvalidRowsError, match="not a whole number"):
        read_ratings(path, integer=True)
    records, report = read_ratings(path, integer=True, skip_invalid=True, dedupe=True)
    assert len(records) == 1 and len(report.skipped) == 1 and report.duplicates == 1
    assert not validate_ratings(path, integer=True).valid


def test_ratings_read_from_parquet_and_datasets(tmp_path):
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_list([ROW, {**ROW, "prompt": "q"}])
    ds.to_parquet(str(tmp_path / "r.parquet"))
    from_parquet, _ = read_ratings(tmp_path / "r.parquet", scale=(1, 10))
    from_dataset, _ = read_ratings(ds, scale=(1, 10))
    assert from_parquet == from_dataset and len(from_dataset) == 2


def test_scales_and_kinds():
    assert parse_scale("1-10") == (1.0, 10.0) and parse_scale("-2,2") == (-2.0, 2.0)
    with pytest.raises(ValueError, match="LOW-HIGH"):
        parse_scale("ten")
    with pytest.raises(ValueError, match="low < high"):
        parse_scale("5-1")


def test_detect_feedback_kind(jsonl):
    assert detect_feedback_kind(jsonl([ROW])) == "ratings"
    assert detect_feedback_kind(jsonl([{"prompt": "p", "completion": "a", "rating": 1}], "b.jsonl")) == "rating"
    assert detect_feedback_kind(jsonl([{"prompt": "p", "completion": "a", "critique": "x"}], "c.jsonl")) == "critiques"
    assert detect_feedback_kind(jsonl([{"prompt": "p", "chosen": "a", "rejected": "b"}], "d.jsonl")) is None


# -- binarisation --------------------------------------------------------------------------------


def test_best_worst_and_best_random_follow_their_conventions():
    rows = [RatingsRecord("p", ["a", "b", "c", "d"], [7, 3, 9, 5])]
    (pair,), report = binarize(rows, rule="best_worst")
    assert (pair.chosen, pair.rejected) == ("c", "b") and report.pairs == 1
    drawn = {binarize(rows, rule="best_random", rng=np.random.default_rng(s))[0][0].rejected for s in range(40)}
    assert drawn == {"a", "b", "d"}  # uniform over the three lower-rated completions, never the best


def test_all_pairs_above_a_margin_and_the_margin_column():
    rows = [RatingsRecord("p", ["a", "b", "c"], [1, 2, 4])]
    pairs, report = binarize(rows, rule="all_pairs", margin=2, margin_scale=0.5)
    assert {(p.chosen, p.rejected, p.margin) for p in pairs} == {("c", "a", 1.5), ("c", "b", 1.0)}
    assert report.below_margin == 1  # b over a has gap 1
    with pytest.raises(ValueError, match="margin > 0"):
        binarize(rows, rule="all_pairs")


def test_ties_and_short_lists_give_no_pair_and_are_counted():
    rows = [RatingsRecord("p", ["a", "b"], [3, 3], source=("f", 1)), RatingsRecord("q", ["a"], [3], source=("f", 2)),
            RatingsRecord("r", ["a", "b", "c"], [5, 5, 1], source=("f", 3))]
    pairs, report = binarize(rows, rule="best_worst", margin=1)
    assert len(pairs) == 1 and pairs[0].rejected == "c"
    assert (report.all_tied, report.too_few, report.lines) == (1, 1, [1, 2])
    tied_best = {binarize(rows[2:], rng=np.random.default_rng(s))[0][0].chosen for s in range(20)}
    assert tied_best == {"a", "b"}  # ties for best are broken at random


def test_single_ratings_group_by_prompt_and_lists_still_binarize():
    singles = [RatingRecord("p", "a", 1), RatingRecord("q", "x", 2), RatingRecord("p", "b", 4)]
    grouped = group_ratings(singles)
    assert grouped[0] == RatingsRecord("p", ["a", "b"], [1, 4]) and len(grouped) == 2
    pairs, flat = best_vs_worst([ListRecord("p", ["a", "b"], [0.2, 0.8]), ListRecord("q", ["a", "b"], [1, 1])],
                                np.random.default_rng(0))
    assert [(p.chosen, p.rejected) for p in pairs] == [("b", "a")] and flat == 1


def test_the_binarize_command(jsonl, tmp_path, capsys):
    data = jsonl([ROW, {**ROW, "prompt": "q", "ratings": [4, 4, 4]}])
    out = tmp_path / "pairs.jsonl"
    assert main(["data", "binarize", "--data", str(data), "--out", str(out), "--rule", "best_random", "--json",
                 "--scale", "1-10"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["pairs"] == 1 and summary["all_tied"] == 1 and summary["no_pair_lines"] == [2]
    (row,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert row["chosen"] == "c" and row["rejected"] in ("a", "b")
    assert main(["data", "binarize", "--data", str(data), "--out", str(tmp_path / "l.jsonl"), "--lists"]) == 0
    assert len((tmp_path / "l.jsonl").read_text().splitlines()) == 2
    tied = jsonl([{**ROW, "ratings": [4, 4, 4]}], "tied.jsonl")
    capsys.readouterr()
    assert main(["data", "binarize", "--data", str(tied), "--out", str(tmp_path / "none.jsonl")]) == 2
    assert "nothing written" in capsys.readouterr().err and not (tmp_path / "none.jsonl").exists()
    assert main(["data", "binarize", "--data", str(data), "--out", str(out), "--scale", "1-5"]) == 2


def test_validate_checks_ratings_files(jsonl, capsys):
    path = jsonl([ROW, {**ROW, "prompt": "q", "ratings": [1, 2]}])
    assert main(["validate", "--data", str(path), "--scale", "1-10", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["kind"] == "ratings" and report["errors"][0]["field"] == "ratings"
    pairs = jsonl([{"prompt": "p", "chosen": "a", "rejected": "b"}], "pairs.jsonl")
    assert main(["validate", "--data", str(pairs), "--scale", "1-10"]) == 2  # --scale is for ratings files


# -- critiques -----------------------------------------------------------------------------------


def test_critiques_read_and_an_empty_critique_is_an_error(jsonl, capsys):
    good = {"prompt": "p", "completion": "a b", "critique": "too short", "issues": ["too_short"]}
    records, _ = read_critiques(jsonl([good]))
    assert records[0].critique == "too short" and records[0].issues == ["too_short"]
    path = jsonl([good, {**good, "completion": "c", "critique": "  "}], "bad.jsonl")
    with pytest.raises(InvalidRowsError) as info:
        read_critiques(path)
    assert (info.value.errors[0].line, info.value.errors[0].field) == (2, "critique")
    assert "is empty" in info.value.errors[0].reason
    assert main(["validate", "--data", str(path)]) == 1
    assert "critique" in capsys.readouterr().out


def test_the_cli_lists_the_library_rules():
    from prefkit.cli import data as data_cli
    from prefkit.data import binarize as binarize_module

    assert data_cli.RULES == binarize_module.RULES
