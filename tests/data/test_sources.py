"""Row sources: JSONL details (BOM, CRLF, byte offsets) that the readers rely on."""

import pytest

from prefkit.data import PairRecord, read_pairs
from prefkit.data._sources import open_source
from prefkit.data.report import RowError


def test_utf8_bom_and_crlf_line_endings(tmp_path):
    path = tmp_path / "windows.jsonl"
    path.write_bytes(
        b'\xef\xbb\xbf{"prompt": "p", "chosen": "a", "rejected": "b"}\r\n'
        b'{"prompt": "q", "chosen": "\xc3\xa9t\xc3\xa9", "rejected": "hiver"}\r\n'
    )
    records, _ = read_pairs(path)
    assert records == [PairRecord("p", "a", "b"), PairRecord("q", "été", "hiver")]


def test_invalid_utf8_offsets_count_from_the_start_of_the_line_and_file(tmp_path):
    first = b'{"prompt": "p", "chosen": "a", "rejected": "b"}\n'
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(first + b'{"prompt": "\xe9"}\n')
    rows = list(open_source(path).rows)
    line, error = rows[1]
    assert line == 2 and isinstance(error, RowError)
    assert error.reason == f"invalid UTF-8 at byte offset 12 of the line (offset {len(first) + 12} in the file)"


def test_a_json_array_file_gets_a_hint(tmp_path):
    path = tmp_path / "array.json"
    path.write_text('[{"prompt": "p", "chosen": "a", "rejected": "b"}]')
    (_, error), = list(open_source(path).rows)
    assert "JSON Lines, one object per line, not a JSON array" in error.reason


def test_a_non_dataset_object_is_refused():
    from prefkit.errors import InputError

    with pytest.raises(InputError, match=r"expected a path or a datasets\.Dataset, got dict"):
        open_source({"prompt": ["p"]})
