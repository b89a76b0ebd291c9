"""Throughput of collection tagging against a real TorchServe serving a RANDOM-WEIGHT VGG16-BN.

    python -m loadtests.tag_benchmark ../shared/data/art5/val --out runs/tag-bench

The labels this model gives are meaningless (its weights are random); only images/s is measured. It builds the
checkpoint and archive, starts TorchServe on free loopback ports with the checked-in configuration, tags the
folder once per ``--concurrency`` value into its own output folder (the first value is the baseline the others
are compared with), writes ``OUT/benchmark.json``, screenshots the last report with headless Chromium when it is
installed, and always stops the server.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
from pathlib import Path

from deploy.archive import build_archive
from deploy.server import Ports, start_server
from loadtests.harness import random_checkpoint
from tagging.tag_collection import get_args_parser as tag_args
from tagging.tag_collection import run as tag
from training.data import class_folders


def screenshot(html: Path, png: Path) -> bool:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        return False
    profile = png.parent / "chromium-profile"
    flags = "--headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking "
    flags += "--disable-component-update --disable-sync --window-size=1280,2000"
    cmd = [chromium, *flags.split(), f"--user-data-dir={profile}", f"--screenshot={png}", html.resolve().as_uri()]
    subprocess.run(cmd, capture_output=True, timeout=120, check=False)
    shutil.rmtree(profile, ignore_errors=True)
    return png.exists()


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", help="folder of class folders of images to tag (required)")
    p.add_argument("--out", default="runs/tag-bench", help="output folder (default: %(default)s)")
    p.add_argument("--arch", default="vgg16_bn", help="model architecture (default: %(default)s)")
    p.add_argument(
        "--concurrency",
        type=int,
        nargs="+",
        default=[1, 8],
        help="requests in flight, one run each; the first is the baseline (default: 1 8)",
    )
    return p


def main(args: argparse.Namespace) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    labels = class_folders(Path(args.source))  # the model's labels: the class folders, as training names them
    checkpoint = random_checkpoint(out / "random-weights.pt", args.arch, labels)
    mar = build_archive(checkpoint, out / "store")
    server = start_server(mar, out / "serve", Ports.free(), bind="127.0.0.1")
    runs = []
    try:
        print(f"TorchServe READY after {server.wait_ready(300):.0f} s (random-weight {args.arch}: labels meaningless)")
        for concurrency in args.concurrency:
            run_dir = out / f"c{concurrency}"
            shutil.rmtree(run_dir, ignore_errors=True)  # a fresh run: nothing to resume
            argv = [
                str(args.source),
                "--url",
                server.predict_url,
                "--out",
                str(run_dir),
                "--labels-from",
                str(checkpoint),
            ]
            summary = tag(tag_args().parse_args([*argv, "--concurrency", str(concurrency)]))
            runs.append({"concurrency": concurrency, **summary})
    finally:
        server.stop()
    base = runs[0]["images_per_second"]
    for r in runs:
        r["speedup_vs_baseline"] = round(r["images_per_second"] / base, 2) if base else None
        print(f"concurrency {r['concurrency']}: {r['images_per_second']:.2f} images/s (x{r['speedup_vs_baseline']})")
    shot = out / "report.png"
    result = {"arch": args.arch, "weights": "random (throughput only)", "source": str(args.source), "runs": runs}
    if screenshot(Path(runs[-1]["report"]), shot):
        result["screenshot"] = str(shot)
        print(f"report screenshot: {shot}")
    (out / "benchmark.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main(get_args_parser().parse_args())
