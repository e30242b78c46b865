"""docs/methods.md lists exactly the registry's losses, each with an existing function, and every
method that is not a loss of the same name in its "Training recipes" table."""

from __future__ import annotations

import re
from pathlib import Path

import prefkit.losses as losses
from prefkit.losses import LOSSES

DOC = Path(__file__).resolve().parents[2] / "docs" / "methods.md"
ROW = re.compile(r"^\|\s*`([a-z0-9_]+)`\s*\|")


RECIPES = "## Training recipes"


def _rows(recipes: bool) -> dict[str, str]:
    """Table rows outside (losses) or inside (``recipes``) the "Training recipes" section."""
    rows: dict[str, str] = {}
    inside = False
    for line in DOC.read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            inside = line.startswith(RECIPES)
        match = ROW.match(line)
        if match and inside == recipes:
            assert match.group(1) not in rows, f"{match.group(1)} listed twice in docs/methods.md"
            rows[match.group(1)] = line
    return rows


def table_rows() -> dict[str, str]:
    return _rows(recipes=False)


def test_every_method_that_is_not_a_loss_has_a_recipe_row_with_its_step():
    from prefkit.engine import METHODS

    recipes = _rows(recipes=True)
    others = {name for name in METHODS if name not in LOSSES}
    assert others - set(recipes) == set(), "methods missing from the Training recipes table of docs/methods.md"
    assert set(recipes) - others == set(), "the Training recipes table lists names that are not such methods"
    for name, line in recipes.items():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        assert cells[1] == METHODS[name].step, f"{name}: the table says step {cells[1]!r}, the registry {METHODS[name].step!r}"
        assert re.search(r"arXiv \d{4}\.\d{4,5}", line) or "no arXiv id" in line, f"{name}: row must cite its paper"
        for dotted in re.findall(r"`(prefkit\.[A-Za-z_.]+)", line):
            assert resolve(dotted.rstrip(".")) is not None, f"{name}: {dotted} does not exist"


def resolve(dotted: str) -> object:
    """The module or attribute a dotted name points at (``AttributeError`` when it does not exist)."""
    import importlib

    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            target: object = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            target = getattr(target, attr)
        return target
    raise ImportError(dotted)


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
