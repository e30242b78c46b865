"""The per-row byte limit (data.max_row_bytes): an over-long row is an invalid row naming file and
line, read in bounded pieces, skipped and counted under skip_invalid."""

import json
import tracemalloc

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from prefkit.config import DataConfig, RunConfig, load
from prefkit.data import (
    MAX_ROW_BYTES,
    InvalidRowsError,
    read_options,
    read_pairs,
    read_prompts,
    validate,
)


def pair(chosen: str = "yes") -> dict:
    return {"prompt": "q", "chosen": chosen, "rejected": "no"}


def line_bytes(row: dict) -> int:
    return len(json.dumps(row).encode())


def test_the_default_is_16_mib_in_the_readers_and_the_config():
    assert MAX_ROW_BYTES == 16 * 1024 * 1024 == DataConfig().max_row_bytes
    assert read_options(DataConfig()) == {"skip_invalid": False, "dedupe": False, "max_row_bytes": MAX_ROW_BYTES}
    cfg = load(RunConfig, None, ["data.max_row_bytes=null", "data.dedupe=true", "data.skip_invalid=true"])
    assert read_options(cfg.data) == {"skip_invalid": True, "dedupe": True, "max_row_bytes": None}
    with pytest.raises(ValueError, match=r"data\.max_row_bytes: must be null \(no limit\) or >= 1, got 0"):
        load(RunConfig, None, ["data.max_row_bytes=0"])


def test_a_line_over_the_limit_is_an_error_naming_file_and_line(jsonl):
    big = pair("x " * 600)
    path = jsonl([pair("a"), big, pair("b")])
    limit = 1000
    with pytest.raises(InvalidRowsError) as caught:
        read_pairs(path, max_row_bytes=limit)
    (error,) = caught.value.errors
    assert (error.file, error.line, error.field) == (str(path), 2, None)
    assert f"the line is {line_bytes(big)} bytes, over the limit of 1000 bytes per row (data.max_row_bytes" in error.reason
    records, report = read_pairs(path, max_row_bytes=limit, skip_invalid=True)
    assert [r.chosen for r in records] == ["a", "b"] and [e.line for e in report.skipped] == [2]
    assert len(read_pairs(path, max_row_bytes=None)[0]) == 3


@pytest.mark.parametrize("ending", [b"\n", b"\r\n", b""])
def test_the_limit_counts_the_line_without_its_ending(tmp_path, ending):
    row = json.dumps(pair("z" * 50)).encode()
    path = tmp_path / "data.jsonl"
    path.write_bytes(json.dumps(pair("a")).encode() + b"\n" + row + ending)
    assert len(read_pairs(path, max_row_bytes=len(row))[0]) == 2
    report = validate(path, max_row_bytes=len(row) - 1)
    assert [(e.line, e.reason.split(",")[0]) for e in report.errors] == [(2, f"the line is {len(row)} bytes")]


def test_an_over_long_line_is_never_held_in_memory(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text(json.dumps(pair("w " * 4_000_000)) + "\n" + json.dumps(pair("fine")) + "\n")
    tracemalloc.start()
    try:
        records, report = read_pairs(path, max_row_bytes=4096, skip_invalid=True)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert [r.chosen for r in records] == ["fine"] and report.skipped[0].line == 1
    assert peak < 4_000_000  # the line is 8 MB; it was read in 1 MiB pieces


def test_columnar_rows_are_measured_by_their_text(tmp_path):
    path = tmp_path / "data.parquet"
    pq.write_table(pa.Table.from_pylist([pair("a"), pair("é" * 600), pair("b")]), path)
    with pytest.raises(InvalidRowsError) as caught:
        read_pairs(path, max_row_bytes=1000)
    (error,) = caught.value.errors
    assert error.line == 2 and "row is 1223 bytes, over the limit of 1000"  # keys count too in error.reason
    assert len(read_prompts(path, max_row_bytes=2000)[0]) == 1


def test_validate_cli_takes_the_limit(jsonl, capsys):
    from prefkit.cli.main import main

    path = jsonl([pair("a"), pair("x " * 600)])
    assert main(["validate", "--data", str(path), "--max-row-bytes", "1000", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["errors"][0]["line"] == 2 and "data.max_row_bytes" in report["errors"][0]["reason"]
    assert main(["validate", "--data", str(path), "--max-row-bytes", "none", "--json"]) == 0


def test_byte_offsets_after_a_skipped_line_stay_right(tmp_path):
    path = tmp_path / "data.jsonl"
    first = json.dumps(pair("x " * 600)).encode() + b"\r\n"
    path.write_bytes(first + b'{"prompt": "q", "chosen": "\xff", "rejected": "no"}\n')
    errors = validate(path, max_row_bytes=1000).errors
    assert errors[1].reason == f"invalid UTF-8 at byte offset 27 of the line (offset {len(first) + 27} in the file)"
