"""Figure tables for README.md and docs/, made from results files, each naming its date, machine, command and source.

    python -m loadtests.figures           # make docs-tables: results/model/ from the model card, every
                                          # results/*/figures.md from its figures.json, then the pages' marked tables
    python -m loadtests.figures --check   # exit 1 when a marked table differs from what its file gives

A figures file, ``results/NAME/figures.json``: ``title``, ``date``, ``machine`` (``cpu``, ``cpu_flags``, ``cores``,
``gpu``: what the command recorded), ``command``, ``source`` (the file the figures were read from), ``columns``,
``rows``, ``notes`` and ``headline`` (``[figure, value]`` pairs for the README's table). ``make bench`` writes one
beside its ``summary.json``; the model's is made here from the card that ``training.export`` writes. In a page, the
lines between ``<!-- figures: results/NAME/figures.json -->`` and ``<!-- /figures -->`` are that file's table, and
between ``<!-- figures: headline -->`` and ``<!-- /figures -->`` the headlines of every results file.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from deploy import ROOT
from loadtests.confidence_figures import confidence_figures

RESULTS = ROOT / "results"
CARD = ROOT / "model_store" / "art-category.card.json"
BLOCK = re.compile(r"(<!-- figures: (\S+) -->\n)(.*?)(<!-- /figures -->)", re.S)
HEADLINE = "headline"
REQUIRED = ("title", "date", "machine", "command", "source", "columns", "rows")


def pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def machine_text(machine: dict) -> str:
    """``AMD EPYC, 2 cores (avx512_bf16), no GPU``: the parts a figure depends on, as recorded."""
    parts = [str(machine.get("cpu") or machine.get("device") or "machine not recorded")]
    if machine.get("cores"):
        parts[0] += f", {machine['cores']} cores"
    if machine.get("cpu_flags"):
        parts[0] += f" ({' '.join(machine['cpu_flags'])})"
    parts.append(f"GPU {machine['gpu']}" if machine.get("gpu") else "no GPU")
    if machine.get("torch"):
        parts.append(f"torch {machine['torch']}")
    return ", ".join(parts)


def caption(fig: dict, path: str) -> str:
    return (
        f"*{fig['title']}* {fig['date']}; {machine_text(fig['machine'])}. "
        f"Command: `{fig['command']}`. Source: `{fig['source']}`, table `{path}`."
    )


def table(columns: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    return lines + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]


def render(fig: dict, path: str) -> str:
    """One results file as Markdown: its caption, its table, its notes."""
    lines = [caption(fig, path), "", *table(fig["columns"], fig["rows"])]
    if fig.get("notes"):
        lines += ["", *(f"- {note}" for note in fig["notes"])]
    return "\n".join(lines) + "\n"


def load(path: str) -> dict:
    fig = json.loads((ROOT / path).read_text(encoding="utf-8"))
    missing = [key for key in REQUIRED if not fig.get(key)]
    if missing:
        raise ValueError(f"{path} lacks {', '.join(missing)}: a figure names its date, machine, command and source")
    return fig


def results_files() -> list[str]:
    """Every checked-in figures file, the model's first."""
    paths = [p.relative_to(ROOT).as_posix() for p in RESULTS.glob("*/figures.json")]
    return sorted(paths, key=lambda path: (path != "results/model/figures.json", path))


def render_headline() -> str:
    """The README's table: every results file's headline rows, each with its date, machine, command and file."""
    rows = []
    for path in results_files():
        fig = load(path)
        for figure, value in fig.get(HEADLINE, []):
            rows.append([figure, value, fig["date"], machine_text(fig["machine"]), f"`{fig['command']}`", f"`{path}`"])
    return "\n".join(table(["figure", "value", "date", "machine", "command", "source"], rows)) + "\n"


def fill(text: str) -> str:
    """``text`` with every marked block replaced by what its results file gives now."""

    def block(match: re.Match) -> str:
        path = match.group(2)
        body = render_headline() if path == HEADLINE else render(load(path), path)
        return match.group(1) + body + match.group(4)

    return BLOCK.sub(block, text)


def pct(x: float) -> str:
    return f"{x:.3f}"


def model_figures(card_path: Path = CARD) -> dict:
    """The default model's quality on the validation split, from the card ``training.export`` wrote: fp32 (the run's
    ``final.json``) and as served (the export's check of the fp16 checkpoint in the serving precision)."""
    card = json.loads(card_path.read_text(encoding="utf-8"))
    check = card["metrics"]["export_check"]
    ref, served = check["reference"], check["exported"]
    training = card.get("training", {})
    rows = [
        ["accuracy", pct(ref["accuracy"]), pct(served["accuracy"])],
        ["macro-F1", pct(ref["macro_f1"]), pct(served["macro_f1"])],
    ]
    rows += [
        [f"F1 {label}", pct(ref["per_class"][label]["f1"]), pct(served["per_class"][label]["f1"])]
        for label in ref["per_class"]
    ]
    output = training.get("args", {}).get("output", "RUN")
    checkpoint = card_path.relative_to(ROOT).as_posix().replace(".card.json", ".pt")
    return {
        "title": f"The default model ({card['version']}) on art5/val, {check['n_images']} images that chose nothing.",
        "date": card["created_utc"][:10],
        "machine": {"device": training.get("device", "not recorded"), "torch": training.get("torch"), "gpu": None},
        "command": f"python -m training.export {output} --output {checkpoint}",
        "source": card_path.relative_to(ROOT).as_posix(),
        "columns": [
            "measure",
            f"{check['reference_precision']} (reference)",
            f"as served: {check['exported_precision']}",
        ],
        "rows": rows,
        "notes": [
            f"Top-1 predictions changed between the two: {check['changed_predictions']} of {check['n_images']}; "
            f"largest probability difference {check['max_probability_difference']:.3f}.",
            f"Dev split (picked the epoch): macro-F1 {pct(card['metrics']['dev_during_training']['macro_f1'])} at "
            f"epoch {card['metrics']['dev_during_training']['epoch']}.",
        ],
        HEADLINE: [
            [
                f"model quality, art5/val ({check['n_images']} images), as served",
                f"accuracy {pct(served['accuracy'])}, macro-F1 {pct(served['macro_f1'])}",
            ],
        ],
    }


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def bench_figures(summary: dict) -> dict:
    """``make bench``'s figures from its ``summary.json``: each compute path's best served configuration beside its
    in-process ceiling and the naive server, and ``ab -k`` against the checked-in configuration."""
    rows, baseline = [], summary["paths"][summary["baseline"]]
    for result in summary["paths"].values():
        best = next(c for c in result["configs"] if c["config"] == result["best_config"])
        rows.append(
            [
                result["precision"],
                best["name"].rsplit(",", 1)[0],
                f"{result['served_img_s']:.2f}",
                ms(result.get("p50_ms")),
                ms(result.get("p99_ms")),
                f"{result['ceiling_img_s']:.2f}",
                f"{result['efficiency']:.2f}",
                f"{result['vs_naive']:.2f}x" if result.get("vs_naive") else "-",
                f"{result['served_img_s'] / baseline['served_img_s']:.2f}x",
            ]
        )
    notes = [
        f"{summary['model']}; {summary['clients']} closed-loop clients, "
        f"{summary['seconds_per_config']['measured']} s measured per server."
    ]
    ab = summary.get("ab") or {}
    if ab.get("requests_per_second"):
        notes.append(
            f"`ab -k -c {ab['concurrency']} -n {ab['requests']}` ({ab['precision']}, checked-in configuration): "
            f"{ab['requests_per_second']:.1f} req/s, p50 {ab['p50_ms']:.0f} ms, p99 {ab['p99_ms']:.0f} ms, "
            f"{ab['failed']} failed."
        )
    fast = summary["paths"][summary["fast_path"]]
    headline = [
        [
            f"serving throughput, {fast['precision']}, {summary['clients']} clients",
            f"{fast['served_img_s']:.2f} img/s (p99 {ms(fast.get('p99_ms'))} ms); "
            f"{fast['served_img_s'] / baseline['served_img_s']:.2f}x {baseline['precision']}, "
            f"efficiency {fast['efficiency']:.2f}",
        ]
    ]
    return {
        "title": "make bench: the best served configuration of each compute path.",
        "date": summary.get("date", "not recorded"),
        "machine": summary["machine"],
        "command": summary["command"],
        "source": "summary.json beside this file",
        "columns": BENCH_COLUMNS,
        "rows": rows,
        "notes": notes,
        HEADLINE: headline,
    }


BENCH_COLUMNS = [
    "compute path",
    "best configuration",
    "served img/s",
    "p50 ms",
    "p99 ms",
    "ceiling img/s",
    "efficiency",
    "vs naive",
    "vs baseline",
]


def write(fig: dict, folder: Path) -> Path:
    """``folder/figures.json`` and its Markdown, ``folder/figures.md``."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "figures.json"
    path.write_text(json.dumps(fig, indent=2) + "\n", encoding="utf-8")
    name = path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else str(path)
    (folder / "figures.md").write_text(render(fig, name), encoding="utf-8")
    return path


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--check", action="store_true", help="only report pages whose tables are stale (default: off)")
    return p


def main(args: argparse.Namespace) -> int:
    if not args.check:
        write(model_figures(), RESULTS / "model")
        confidence = confidence_figures(CARD)
        if confidence:
            write(confidence, RESULTS / "confidence")
        for path in results_files():
            (ROOT / path).with_name("figures.md").write_text(render(load(path), path), encoding="utf-8")
    stale = []
    for page in pages():
        text = page.read_text(encoding="utf-8")
        filled = fill(text)
        if filled != text:
            stale.append(page.relative_to(ROOT).as_posix())
            if not args.check:
                page.write_text(filled, encoding="utf-8")
    verb = "stale (run make docs-tables)" if args.check else "rewritten"
    print(f"{verb}: {', '.join(stale)}" if stale else "every figure table is current")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main(get_args_parser().parse_args()))
