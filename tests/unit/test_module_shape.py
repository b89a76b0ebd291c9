"""Modules that do one thing: each project module stays under about 300 lines, and no project modules import each
other in a cycle (counting imports made only for type checking, which a split can hide a cycle in)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from deploy import ROOT

PACKAGES = ("handlers", "deploy", "training", "tagging", "loadtests")
MAX_LINES = 300
#: Modules allowed over MAX_LINES for now, with the line count they may not exceed and why they are not split yet.
KNOWN_LONG: dict[str, tuple[int, str]] = {}


def project_modules() -> dict[str, Path]:
    """Dotted name -> file of every module in the project's packages (``pkg/__init__.py`` is ``pkg``)."""
    modules = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def imported_modules(name: str, path: Path, known: set[str]) -> set[str]:
    """The project modules that ``name`` imports anywhere in its file (function bodies and TYPE_CHECKING too).
    ``from pkg import mod`` counts as importing ``pkg.mod`` when that is a module, else ``pkg``."""
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".")[: len(name.split(".")) - node.level + is_package]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:  # a.b.c (an attribute) -> a.b -> a
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
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
    return found


def test_no_project_module_is_over_300_lines():
    too_long = {}
    for path in project_modules().values():
        rel = path.relative_to(ROOT).as_posix()
        lines = len(path.read_text(encoding="utf-8").splitlines())
        limit = KNOWN_LONG.get(rel, (MAX_LINES, ""))[0]
        if lines > limit:
            too_long[rel] = lines
    assert not too_long, (
        f"modules over {MAX_LINES} lines (or over their KNOWN_LONG ceiling): {too_long}; split them where the code "
        "has seams (issue 27)"
    )


def test_known_long_modules_still_exist():
    missing = [rel for rel in KNOWN_LONG if not (ROOT / rel).exists()]
    assert not missing, f"KNOWN_LONG names modules that are gone: {missing}; remove them from the list"


def test_no_import_cycle_among_project_modules():
    modules = project_modules()
    known = set(modules)
    graph = {name: imported_modules(name, path, known) for name, path in modules.items()}
    found = cycles(graph)
    assert not found, f"project modules import each other in a cycle: {found}; move the shared piece to a third module"


@pytest.mark.parametrize(
    ("graph", "expected"),
    [
        ({"a": {"b"}, "b": {"a"}, "c": {"a"}}, [["a", "b"]]),
        ({"a": {"b"}, "b": {"c"}, "c": set()}, []),
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"d"}}, [["a", "b", "c"]]),
    ],
)
def test_the_cycle_check_finds_cycles(graph, expected):
    assert cycles(graph) == expected, f"cycles({graph})"
