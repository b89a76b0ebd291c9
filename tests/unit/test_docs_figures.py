"""Figures come from commands: every figure table in README.md and docs/ is a results file's table, current, naming
its date, machine, command and source file (loadtests/figures.py, `make docs-tables`), or a derivation from stated
constants that a named test recomputes."""

from __future__ import annotations

import json
import re

import pytest

from deploy import ROOT
from loadtests import figures

# Pages whose tables are owned elsewhere and not yet made from results files. Remove a page from here once its tables
# are marked blocks.
NOT_YET: set[str] = set()
# A derivation: a table computed from constants the page states, not measured (docs/reliability.md's memory limits),
# between <!-- derivation: PATH --> and <!-- /derivation -->, where PATH is the test that recomputes it and names
# the page.
DERIVATION = re.compile(r"<!-- derivation: (\S+) -->\n(.*?)<!-- /derivation -->", re.S)
# A cell that is a measured figure: a number with decimals, perhaps several and a unit ("0.860", "19.25 img/s",
# "72.8 / 109.7 s", "2.74x"). Reference tables (status codes, limits, settings, prose) have no such cell.
FIGURE = re.compile(r"^[*~]*\d+\.\d+(\s*[/,-]\s*\d+(\.\d+)?)*\s*(x|%|ms|s|img/s|req/s|MiB|MB|GB|GiB)?[*]*$")


def page_names() -> list[str]:
    return [page.relative_to(ROOT).as_posix() for page in figures.pages()]


def tables(text: str) -> list[tuple[int, list[str]]]:
    """(first line number, lines) of every Markdown table outside code fences."""
    found, current, fenced = [], None, False
    for number, line in enumerate(text.splitlines(), 1):
        if line.startswith("```"):
            fenced = not fenced
        if not fenced and line.startswith("|"):
            if current is None:
                current = (number, [])
                found.append(current)
            current[1].append(line)
        else:
            current = None
    return found


def is_figure(row: str) -> bool:
    return any(FIGURE.match(cell.strip()) for cell in row.strip().strip("|").split("|"))


def marked_lines(text: str) -> set[int]:
    """Line numbers inside the page's marked figure blocks and derivations."""
    inside = set()
    for match, group in [(m, 3) for m in figures.BLOCK.finditer(text)] + [(m, 2) for m in DERIVATION.finditer(text)]:
        first = text[: match.start(group)].count("\n") + 1
        inside |= set(range(first, first + match.group(group).count("\n") + 1))
    return inside


@pytest.mark.parametrize("name", page_names())
def test_every_figure_table_is_a_results_files_table(name):
    if name in NOT_YET:
        pytest.skip(f"{name}: its tables are not made from results files yet (NOT_YET)")
    text = (ROOT / name).read_text(encoding="utf-8")
    inside = marked_lines(text)
    loose = [first for first, lines in tables(text) if any(map(is_figure, lines[2:])) and first not in inside]
    assert not loose, (
        f"{name}: figure tables at lines {loose} are typed in by hand; put the figures in a results/NAME/figures.json "
        "(a command's output) and mark the table <!-- figures: results/NAME/figures.json --> ... <!-- /figures -->"
    )


@pytest.mark.parametrize("name", page_names())
def test_derivations_name_the_test_that_recomputes_them(name):
    for match in DERIVATION.finditer((ROOT / name).read_text(encoding="utf-8")):
        path = match.group(1)
        is_test = path.startswith("tests/") and (ROOT / path).is_file()
        assert is_test, f"{name}: the derivation names {path}, not a test file"
        assert name in (ROOT / path).read_text(encoding="utf-8"), f"{name}: {path} does not name this page"
        assert "|" in match.group(2), f"{name}: the derivation of {path} holds no table"


@pytest.mark.parametrize("name", page_names())
def test_marked_tables_are_current_and_name_their_command_and_source(name):
    text = (ROOT / name).read_text(encoding="utf-8")
    for match in figures.BLOCK.finditer(text):
        body = match.group(3)
        if match.group(2) == figures.HEADLINE:
            rows = [line for line in body.splitlines() if line.startswith("|")][2:]
            assert rows, f"{name}: the headline table is empty"
            for row in rows:
                cells = [cell.strip() for cell in row.strip("|").split("|")]
                assert len(cells) == 6 and all(cells), (
                    f"{name}: a headline row lacks date/machine/command/source: {row}"
                )
                assert cells[5].strip("`") in figures.results_files(), f"{name}: {cells[5]} is not a results file"
        else:
            assert "Command: `" in body and "Source: `" in body, f"{name}: {match.group(2)}'s table names no command"
    assert figures.fill(text) == text, f"{name}: a figure table differs from its results file; run make docs-tables"


def test_the_front_door_and_the_benchmark_page_show_figures():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "<!-- figures: headline -->" in readme, "README.md has no table of current figures"
    for name in ("docs/benchmarks.md", "docs/model.md"):
        assert figures.BLOCK.search((ROOT / name).read_text(encoding="utf-8")), f"{name} shows no results table"


@pytest.mark.parametrize("path", figures.results_files())
def test_each_results_file_names_date_machine_command_and_source(path):
    fig = figures.load(path)  # raises on a missing key
    assert fig["machine"].get("cpu") or fig["machine"].get("device"), f"{path}: no CPU or device recorded"
    assert all(len(row) == len(fig["columns"]) for row in fig["rows"]), f"{path}: rows and columns disagree"
    assert fig.get("headline"), f"{path}: no headline row for the README"


def test_the_model_table_is_the_cards_figures():
    card = json.loads(figures.CARD.read_text(encoding="utf-8"))
    fig = figures.model_figures()
    served = card["metrics"]["export_check"]["exported"]
    assert fig["rows"][0] == [
        "accuracy",
        f"{card['metrics']['export_check']['reference']['accuracy']:.3f}",
        f"{served['accuracy']:.3f}",
    ], fig["rows"][0]
    assert fig["source"] == "model_store/art-category.card.json", fig["source"]
    assert json.loads((ROOT / "results/model/figures.json").read_text(encoding="utf-8")) == fig, (
        "results/model/figures.json is not the card's figures; run make docs-tables"
    )


def test_bench_figures_from_a_summary(tmp_path):
    def path(precision: str, img_s: float) -> dict:
        config = {"batch": 2, "delay_ms": 10, "workers": 2}
        best = {"name": f"batch 2, delay 10 ms, 2 workers, {precision}", "config": config}
        return {
            "precision": precision,
            "configs": [best],
            "best_config": config,
            "served_img_s": img_s,
            "p50_ms": 200.0,
            "p99_ms": 300.0,
            "ceiling_img_s": img_s * 1.1,
            "efficiency": 0.9,
            "vs_naive": 1.0,
        }

    summary = {
        "date": "2026-12-05 10:00 UTC",
        "model": "vgg16_bn with random weights",
        "clients": 4,
        "seconds_per_config": {"measured": 20},
        "baseline": "fp32",
        "fast_path": "auto",
        "paths": {"fp32": path("fp32", 7.0), "auto": path("bf16 + channels_last", 21.0)},
        "ab": None,
        "machine": {"cpu": "Some CPU", "cpu_flags": ["amx_bf16"], "cores": 2, "gpu": None},
        "command": "python -m loadtests.bench --out results/bench-cpu",
    }
    fig = figures.bench_figures(summary)
    assert [row[0] for row in fig["rows"]] == ["fp32", "bf16 + channels_last"], fig["rows"]
    assert fig["rows"][1][-1] == "3.00x" and fig["rows"][1][1] == "batch 2, delay 10 ms, 2 workers", fig["rows"][1]
    assert "3.00x fp32" in fig["headline"][0][1], fig["headline"]
    written = figures.write(fig, tmp_path / "bench")
    markdown = (tmp_path / "bench" / "figures.md").read_text(encoding="utf-8")
    assert "Some CPU, 2 cores (amx_bf16), no GPU" in markdown and "`python -m loadtests.bench" in markdown, markdown
    assert json.loads(written.read_text(encoding="utf-8")) == fig
