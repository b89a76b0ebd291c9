"""The manual's pointers hold: every `make TARGET` it names exists, every relative link and named docs page resolves."""

from __future__ import annotations

import re

import pytest

from deploy import ROOT

PAGES = [
    "README.md",
    "CHANGELOG.md",
    "training/README.md",
    *(p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").glob("*.md")),
]


def make_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    return {name for line in re.findall(r"^([a-z][\w .-]*):(?!=)", text, re.M) for name in line.split()}


@pytest.mark.parametrize("name", PAGES)
def test_named_make_targets_exist(name):
    named = set(re.findall(r"\bmake ([a-z][\w-]+)", (ROOT / name).read_text(encoding="utf-8")))
    missing = named - make_targets()
    assert not missing, f"{name} names make targets the Makefile lacks: {sorted(missing)}"


@pytest.mark.parametrize("name", PAGES)
def test_links_and_named_pages_resolve(name):
    text = (ROOT / name).read_text(encoding="utf-8")
    base = (ROOT / name).parent
    links = [link.split("#")[0] for link in re.findall(r"\]\(([^)\s]+)\)", text) if "://" not in link]
    broken = [link for link in links if link and not (base / link).exists()]
    named = set(re.findall(r"\b((?:docs|deploy/k8s|tagging|training)/[\w./-]+\.md)\b", text))
    broken += [page for page in named if not (ROOT / page).exists()]
    assert not broken, f"{name} points to files that do not exist: {broken}"
