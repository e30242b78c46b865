"""Helpers that write small feedback files into tmp_path."""

import json
from pathlib import Path

import pytest


def write_lines(path: Path, rows: list) -> Path:
    """Write one line per item: dicts as JSON, str as given, bytes as raw bytes."""
    chunks = []
    for row in rows:
        if isinstance(row, bytes):
            chunks.append(row)
        elif isinstance(row, str):
            chunks.append(row.encode())
        else:
            chunks.append(json.dumps(row).encode())
    path.write_bytes(b"\n".join(chunks) + b"\n")
    return path


@pytest.fixture
def jsonl(tmp_path):
    def make(rows: list, name: str = "data.jsonl") -> Path:
        return write_lines(tmp_path / name, rows)

    return make
