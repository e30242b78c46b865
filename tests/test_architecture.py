"""The project's import rules, checked on the source: no import cycles between prefkit's modules,
and no private name imported across modules.

The graph is read with ``ast`` (nothing is imported): every ``import`` and ``from ... import``
statement of every module under ``prefkit/``, at module level or inside a function alike (a lazy
import is still a dependency), except those in an ``if TYPE_CHECKING:`` block, which never run.
``from pkg import name`` depends on the module ``pkg.name`` when that is a module, else on ``pkg``.

A name is private when it starts with one underscore (``_x``; dunders are not private). A private
attribute (``from prefkit.a.b import _helper``) belongs to its module and is imported by no
other. A private module (``prefkit/losses/_checks.py``) belongs to its package: modules inside
``prefkit/losses/`` may import it, others may not. ``prefkit/_atomic.py`` thus serves all of
prefkit. Type-checking imports count for this rule too: they are code that names the private thing.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import prefkit

PREFKIT = Path(prefkit.__file__).parent


@dataclass(frozen=True)
class Import:
    """One imported thing: ``path`` is its full dotted name (``prefkit.a.b`` for a module,
    ``prefkit.a.b.name`` for a name from a module) and ``target`` the module it runs."""

    importer: str
    path: str
    target: str
    line: int
    type_checking: bool


def module_files(root: Path, package: str) -> dict[str, Path]:
    """Every module of the package in ``root`` (the directory of its ``__init__.py``), by dotted
    name; a package's name maps to its ``__init__.py``."""
    modules = {}
    for file in sorted(root.rglob("*.py")):
        parts = (package, *file.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = file
    return modules


def type_checking_nodes(tree: ast.AST) -> set[int]:
    """The ids of the nodes inside the body (not the ``else``) of every ``if TYPE_CHECKING:`` /
    ``if typing.TYPE_CHECKING:``."""
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.If):
            continue
        test = node.test
        name = test.id if isinstance(test, ast.Name) else test.attr if isinstance(test, ast.Attribute) else None
        if name == "TYPE_CHECKING":
            skipped.update(id(inner) for statement in node.body for inner in ast.walk(statement))
    return skipped


def absolute_module(importer: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The module a ``from ... import`` names, relative imports resolved against ``importer``."""
    if not node.level:
        return node.module or ""
    base = importer.split(".") if is_package else importer.split(".")[:-1]
    base = base[: len(base) - node.level + 1]
    return ".".join([*base, node.module] if node.module else base)


def imports_of(modules: dict[str, Path], package: str) -> Iterator[Import]:
    """The imports of the package's own modules that every module in ``modules`` makes."""
    for importer, file in modules.items():
        tree = ast.parse(file.read_text(encoding="utf-8"), filename=str(file))
        skipped = type_checking_nodes(tree)
        for node in ast.walk(tree):
            paths: list[tuple[str, str]] = []  # (path, target)
            if isinstance(node, ast.Import):
                paths = [(alias.name, alias.name) for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                source = absolute_module(importer, file.name == "__init__.py", node)
                for alias in node.names:
                    path = f"{source}.{alias.name}"
                    paths.append((path, path if path in modules else source))
            for path, target in paths:
                if path == package or path.startswith(package + "."):
                    yield Import(importer, path, target, node.lineno, id(node) in skipped)


def import_graph(modules: dict[str, Path], package: str) -> dict[str, dict[str, int]]:
    """Module -> the modules of the package it imports at run time, each with the line of its
    first such import (``TYPE_CHECKING`` imports left out)."""
    graph: dict[str, dict[str, int]] = {name: {} for name in modules}
    for found in imports_of(modules, package):
        if not found.type_checking and found.target in modules and found.target != found.importer:
            graph[found.importer].setdefault(found.target, found.line)
    return graph


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm): each is
    a set of modules that import each other, directly or through the others."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in graph[node]:
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def describe_cycle(component: list[str], graph: dict[str, dict[str, int]], modules: dict[str, Path]) -> str:
    """The members of a cycle and the imports between them (``a -> b (file:line)``)."""
    members = set(component)
    edges = [f"    {a} -> {b} ({modules[a]}:{line})"
             for a in component for b, line in sorted(graph[a].items()) if b in members]
    return "cycle of " + ", ".join(component) + ":\n" + "\n".join(edges)


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_imports(modules: dict[str, Path], package: str) -> list[str]:
    """Every import of a private name from outside its owner (see the module doc), as
    ``file:line: importer imports path``."""
    bad = []
    for found in imports_of(modules, package):
        parts = found.path.split(".")
        for depth in range(1, len(parts)):
            if not is_private(parts[depth]):
                continue
            prefix = ".".join(parts[: depth + 1])
            owner = ".".join(parts[:depth]) if prefix in modules else prefix  # a module's package, else its module
            if prefix not in modules or not (found.importer == owner or found.importer.startswith(owner + ".")):
                bad.append(f"{modules[found.importer]}:{found.line}: {found.importer} imports {found.path}")
                break
    return bad


# ----------------------------------------------------------------------------------- prefkit


def test_prefkit_has_no_import_cycles():
    modules = module_files(PREFKIT, "prefkit")
    graph = import_graph(modules, "prefkit")
    assert "prefkit.preference.models" in graph["prefkit.preference.io"]  # the graph is read at all
    found = cycles(graph)
    assert not found, "import cycles:\n" + "\n".join(describe_cycle(c, graph, modules) for c in found)


def test_prefkit_imports_no_private_name_across_modules():
    bad = private_imports(module_files(PREFKIT, "prefkit"), "prefkit")
    assert not bad, "private names imported from outside their module or package:\n" + "\n".join(bad)


# ---------------------------------------------------------------- the checks on a planted package


def write_package(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def test_a_planted_cycle_is_found_and_reported(tmp_path):
    root = write_package(tmp_path / "toy", {
        "__init__.py": "",
        "a.py": "from toy import b\n",
        "b.py": "def lazy():\n    from toy.a import thing  # a lazy import is a dependency too\n",
        "c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from toy.d import Kind\n",
        "d.py": "from .c import helper\n",  # c -> d only under TYPE_CHECKING: no cycle
        "sub/__init__.py": "from . import e\n",
        "sub/e.py": "from ..sub import f\n",
        "sub/f.py": "import toy.sub.e\n",
    })
    modules = module_files(root, "toy")
    graph = import_graph(modules, "toy")
    assert graph["toy.d"] == {"toy.c": 1} and graph["toy.c"] == {}
    assert graph["toy.sub"] == {"toy.sub.e": 1} and graph["toy.sub.e"] == {"toy.sub.f": 1}
    found = cycles(graph)
    assert found == [["toy.a", "toy.b"], ["toy.sub.e", "toy.sub.f"]]
    message = describe_cycle(found[0], graph, modules)
    assert "toy.a -> toy.b" in message and f"{root / 'b.py'}:2" in message


def test_private_names_are_found_outside_their_owner_only(tmp_path):
    root = write_package(tmp_path / "toy", {
        "__init__.py": "__version__ = '1'\n",
        "_shared.py": "",
        "util.py": "_secret = 1\n",
        "pkg/__init__.py": "",
        "pkg/_checks.py": "",
        "pkg/inner/__init__.py": "",
        "pkg/inner/deep.py": "from toy.pkg._checks import check\n",  # inside toy/pkg/: fine
        "pkg/good.py": "from toy.pkg import _checks\nfrom . import _checks as c\nfrom toy import __version__\n"
                       "from toy._shared import thing\n",  # toy/_shared.py serves all of toy
        "outside.py": "from toy.pkg import _checks\nimport toy.pkg._checks\nfrom toy.util import _secret\n"
                      "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from toy.pkg._checks import Kind\n",
    })
    bad = private_imports(module_files(root, "toy"), "toy")
    assert [entry.split(": ", 1)[1] for entry in bad] == [
        "toy.outside imports toy.pkg._checks", "toy.outside imports toy.pkg._checks",
        "toy.outside imports toy.util._secret", "toy.outside imports toy.pkg._checks.Kind",
    ]
    assert all(entry.startswith(f"{root / 'outside.py'}:") for entry in bad)
