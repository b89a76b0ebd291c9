"""What the model's input size costs to serve: VGG16-BN forward throughput at several input sizes, in one run.

    python -m loadtests.input_size --sizes 112 144 224 --out results/input-size

For each size, a random-weight checkpoint with that crop (a throughput fixture, never a classifier) classifies
decoded uint8 batches in-process, in the serving precision (``--precision auto``: bf16 + channels_last where the
CPU has bf16 natively), with the torch threads of ``--threads``. The sizes are measured in interleaved rounds so
that a change in the machine's load falls on all of them, and each size's median is reported with its cost per
image relative to the first size. Decoding, resizing and HTTP do not depend on the model's input size and are left
out: this is the model's share of a request, the part the input size changes.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from handlers.classifier import ArtClassifier
from handlers.model import ArtVGG, save_checkpoint
from handlers.preprocessing import PreprocessConfig
from loadtests.bench_measure import forward_rate
from loadtests.harness import LABELS
from loadtests.machine import machine

NOTE = {"note": "random weights: for throughput measurements only, never a classifier"}


def sized_checkpoint(path: Path, arch: str, size: int) -> Path:
    """A random-weight checkpoint whose preprocessing crops ``size`` px (shorter side resized to 8/7 of it)."""
    torch.manual_seed(0)
    preprocess = PreprocessConfig(resize=round(size * 8 / 7), crop=size)
    save_checkpoint(path, ArtVGG(len(LABELS), arch), LABELS, preprocess, extra=NOTE)
    return path


def measure(args: argparse.Namespace, work: Path) -> dict[int, list[float]]:
    """Images/s of each size, one value per round."""
    classifiers = {
        size: ArtClassifier.load(sized_checkpoint(work / f"{size}.pt", args.arch, size), precision=args.precision)
        for size in args.sizes
    }
    rates: dict[int, list[float]] = {size: [] for size in args.sizes}
    for _ in range(args.rounds):
        for size, classifier in classifiers.items():
            rates[size].append(forward_rate(classifier, args.batch, args.seconds))
    return rates


def summarise(args: argparse.Namespace, rates: dict[int, list[float]], command: str) -> dict:
    base = args.sizes[0]
    median = {size: statistics.median(r) for size, r in rates.items()}
    rows = {
        str(size): {
            "images_per_second": median[size],
            "rounds": rates[size],
            "cost_per_image_vs_first": median[base] / median[size],
            "pixels_vs_first": (size / base) ** 2,
        }
        for size in args.sizes
    }
    return {
        "command": command,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": machine(),
        "arch": args.arch,
        "precision": args.precision,
        "batch": args.batch,
        "threads": torch.get_num_threads(),
        "sizes": rows,
    }


def figures(summary: dict, source: str) -> dict:
    """The summary as a figures file (loadtests/figures.py renders it into the docs)."""
    sizes = list(summary["sizes"])
    base = sizes[0]
    fig = {key: summary[key] for key in ("date", "machine", "command")} | {"source": source}
    fig["title"] = (
        f"The model's cost per image by input size: {summary['arch']} forward, batch {summary['batch']}, precision "
        f"{summary['precision']}, {summary['threads']} threads, median of {len(summary['sizes'][base]['rounds'])} "
        "interleaved rounds."
    )
    fig["columns"] = ["input size", "images/s", f"cost per image vs {base} px", f"pixels vs {base} px"]
    fig["rows"] = [
        [f"{size} px", f"{r['images_per_second']:.1f}", f"{r['cost_per_image_vs_first']:.2f}x",
         f"{r['pixels_vs_first']:.2f}x"]
        for size, r in summary["sizes"].items()
    ]  # fmt: skip
    if len(sizes) > 1:
        r = summary["sizes"][sizes[1]]
        fig["headline"] = [
            [f"model cost per image, {sizes[1]} px input vs {base} px", f"{r['cost_per_image_vs_first']:.2f}x"]
        ]
    fig["notes"] = [
        "Decoded images only: decoding, resizing and HTTP cost the same at every input size and are left out.",
        "Random weights: a throughput fixture; the cost of a forward pass does not depend on the weights.",
    ]
    return fig


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[112, 144, 224], help="input sizes (default: %(default)s)")
    p.add_argument("--arch", default="vgg16_bn", help="model preset (default: %(default)s)")
    p.add_argument("--precision", default="auto", help="compute path, as served (default: %(default)s)")
    p.add_argument("--batch", type=int, default=8, help="images per forward pass (default: %(default)s)")
    p.add_argument("--seconds", type=float, default=8.0, help="measured seconds per size and round (default: 8)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default: %(default)s)")
    p.add_argument("--threads", type=int, default=0, help="torch threads, 0 = torch's default (default: 0)")
    p.add_argument("--out", default="results/input-size", help="folder for summary.json (default: %(default)s)")
    return p


def main(args: argparse.Namespace) -> dict:
    if args.threads:
        torch.set_num_threads(args.threads)
    command = ("python -m loadtests.input_size " + " ".join(sys.argv[1:])).strip()
    with tempfile.TemporaryDirectory() as work:
        rates = measure(args, Path(work))
    summary = summarise(args, rates, command)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    fig = figures(summary, (out / "summary.json").as_posix())
    (out / "figures.json").write_text(json.dumps(fig, indent=2) + "\n", encoding="utf-8")
    for row in fig["rows"]:
        print("  ".join(row))
    return summary


if __name__ == "__main__":
    main(get_args_parser().parse_args())
