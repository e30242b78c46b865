"""docs/methods.md lists exactly the registry's losses, each with an existing function."""

from __future__ import annotations

import re
from pathlib import Path

import prefkit.losses as losses
from prefkit.losses import LOSSES

DOC = Path(__file__).resolve().parents[2] / "docs" / "methods.md"
ROW = re.compile(r"^\|\s*`([a-z0-9_]+)`\s*\|")


def table_rows() -> dict[str, str]:
    rows: dict[str, str] = {}
    for line in DOC.read_text(encoding="utf-8").splitlines():
        match = ROW.match(line)
        if match:
            assert match.group(1) not in rows, f"{match.group(1)} listed twice in docs/methods.md"
            rows[match.group(1)] = line
    return rows


def test_every_registry_loss_is_in_the_doc_and_every_doc_name_is_registered():
    names = set(table_rows())
    assert set(LOSSES) - names == set(), "registry losses missing from docs/methods.md"
    assert names - set(LOSSES) == set(), "docs/methods.md lists names that are not in LOSSES"


def test_each_row_points_at_its_function_and_cites_arxiv():
    for name, line in table_rows().items():
        functions = re.findall(r"`prefkit\.losses\.([a-z0-9_]+)`", line)
        assert functions, f"{name}: no `prefkit.losses.<function>` in its row"
        assert getattr(losses, functions[0]) is LOSSES[name].fn, (
            f"{name}: row names the wrong function"
        )
        assert re.search(r"arXiv \d{4}\.\d{4,5}", line), f"{name}: row must cite an arXiv id"


def test_config_snippets_use_registry_names():
    for name, line in table_rows().items():
        for picked in re.findall(r"loss\.name=([a-z0-9_]+)", line):
            assert picked in LOSSES, f"{name}: snippet picks unknown loss {picked!r}"
