"""CPU serving-efficiency benchmark: in-process ceiling vs TorchServe dynamic batching vs a naive web app.

    python -m loadtests.bench            # `make bench`; about 10 minutes on a 2-core CPU

All in one run on one machine, with one random-weight VGG16-BN (throughput only: random weights are
not a classifier, and the speed of a forward pass does not depend on the weights' values):

* **ceiling**: throughput of ``ArtClassifier.predict`` (normalise + VGG16-BN + softmax, the handler's
  own step) on already-decoded 224x224 uint8 batches, at each batch size the sweep serves: the better of one
  process using all ``--threads`` and ``--threads`` single-thread processes running at once. JPEG decoding and
  resizing are measured separately (``preprocess_ms_per_image``) and are *not* in the ceiling.
* **served**: TorchServe with artserve's handler and dynamic batching, one configuration
  (batchSize, maxBatchDelay ms, workers) at a time, each from its own temporary .mar.
* **naive**: loadtests/naive_server.py, one request = one decode + one batch-1 forward pass.

Load: ``--clients`` (default 4) closed-loop clients posting real JPEGs from ``--images`` (default
../shared/data/art5/val) through tagging/client.py, after a warm-up. Writes
``loadtests/results/bench-<timestamp>/`` (or ``--out``): ``results.md`` (table), ``throughput_vs_p95.png``,
``summary.json`` (best configuration: highest served throughput with p99 under ``--p99-target-ms``) and
``figures.json``/``figures.md`` (the docs' table, with date, machine and command: ``--out results/bench-cpu``,
then ``make docs-tables``).
Efficiency = served / ceiling at the configuration's effective batch size (its batchSize, at most
the number of clients, since a closed loop never has more requests outstanding). ``--threads``
(default: the core count) sets torch's threads in-process and in the naive server, and is split
between TorchServe's workers (OMP_NUM_THREADS), so every contender gets the same cores.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

import torch

from deploy import ROOT
from handlers.classifier import ArtClassifier
from loadtests import figures
from loadtests.bench_measure import ceiling, preprocess_ms
from loadtests.bench_report import best_config, plot, table
from loadtests.bench_servers import DEFAULT_CONFIGS, ServeConfig, parse_configs, run_ab, run_naive, run_served
from loadtests.harness import random_checkpoint
from loadtests.machine import machine
from training import DATA_DIR


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", default=DEFAULT_CONFIGS, help="batch:delay_ms:workers list (default: %(default)s)")
    p.add_argument("--clients", type=int, default=4, help="concurrent closed-loop clients (default: %(default)s)")
    p.add_argument("--duration", type=float, default=30, help="measured seconds per server (default: %(default)s)")
    p.add_argument("--warmup", type=float, default=5, help="unmeasured seconds first (default: %(default)s)")
    p.add_argument("--ceiling-seconds", type=float, default=6, help="per batch size (default: %(default)s)")
    p.add_argument(
        "--threads",
        type=int,
        default=os.cpu_count(),
        help="torch threads: in-process, naive server, and split between TorchServe workers (default: cores)",
    )
    p.add_argument(
        "--worker-threads",
        type=int,
        default=0,
        help="torch threads of each TorchServe worker; 0 = --threads split between the workers (default: 0)",
    )
    p.add_argument("--arch", default="vgg16_bn", help="model preset (default: %(default)s)")
    p.add_argument("--images", default=str(DATA_DIR / "val"), help="JPEG folder (default: %(default)s)")
    p.add_argument("--max-images", type=int, default=64, help="images cycled through (default: %(default)s)")
    p.add_argument("--p99-target-ms", type=float, default=3000, help="best config's p99 bound (default: %(default)s)")
    p.add_argument(
        "--precisions",
        default="fp32,auto",
        help="compute paths to compare, the first is the baseline (default: %(default)s)",
    )
    p.add_argument(
        "--ab-requests",
        type=int,
        default=400,
        help="Apache Bench (ab -k) requests against the checked-in configuration, 0 = skip (default: %(default)s)",
    )
    p.add_argument("--ab-concurrency", type=int, default=8, help="ab -c (default: %(default)s)")
    p.add_argument("--out", default=None, help="default: loadtests/results/bench-<UTC timestamp>")
    return p


def measure_precision(checkpoint: Path, precision: str, configs: list[ServeConfig], images, work, args) -> dict:
    """Ceiling, naive server and every served configuration for one ``precision``."""
    classifier = ArtClassifier.load(checkpoint, precision=precision)
    chosen = str(classifier.precision)
    batches = sorted({min(c.batch, args.clients) for c in configs} | {1})
    runs = {b: ceiling(classifier, checkpoint, precision, b, args.ceiling_seconds, args.threads) for b in batches}
    ceilings = {b: run["img_s"] for b, run in runs.items()}
    prep = preprocess_ms(images[:32], classifier)
    print(f"[{chosen}] ceiling img/s by batch: { {b: round(v, 2) for b, v in ceilings.items()} }; prep {prep:.1f} ms")
    del classifier
    naive = {"name": f"naive, {chosen}", **run_naive(checkpoint, precision, images, args)}
    print(f"[{chosen}] naive: {naive['img_s']:.2f} img/s, p99 {naive.get('p99_ms', 0):.0f} ms")
    served = []
    for config in configs:
        result = run_served(checkpoint, precision, config, images, work, args)
        result.update(name=f"{config.label}, {chosen}", config=asdict(config), precision=chosen)
        result["efficiency"] = result["img_s"] / ceilings[min(config.batch, args.clients)]
        served.append(result)
        print(f"[{chosen}] {config.label}: {result['img_s']:.2f} img/s, p99 {result.get('p99_ms', 0):.0f} ms")
    best = best_config(served, args.p99_target_ms)
    return {
        "precision": chosen,
        "setting": precision,
        "ceiling_img_s": ceilings[min(best["config"]["batch"], args.clients)],
        "ceiling_img_s_by_batch": ceilings,
        "ceiling_runs": runs,
        "preprocess_ms_per_image": prep,
        "served_img_s": best["img_s"],
        "efficiency": best["efficiency"],
        "vs_naive": best["img_s"] / naive["img_s"] if naive["img_s"] else None,
        "best_config": best["config"],
        "p50_ms": best.get("p50_ms"),
        "p95_ms": best.get("p95_ms"),
        "p99_ms": best.get("p99_ms"),
        "p99_target_met": best.get("p99_ms", float("inf")) < args.p99_target_ms,
        "naive": naive,
        "configs": served,
    }


def main(args: argparse.Namespace) -> dict:
    out = Path(args.out or ROOT / "loadtests" / "results" / f"bench-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}")
    out.mkdir(parents=True, exist_ok=True)
    configs = parse_configs(args.configs)
    precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    images = sorted(Path(args.images).rglob("*.jpg"))[: args.max_images]
    if not images:
        raise SystemExit(f"no .jpg images under {args.images}: pass --images")
    torch.set_num_threads(args.threads)
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="artserve-bench-") as tmp:
        work = Path(tmp)
        checkpoint = random_checkpoint(work / f"random-{args.arch}.pt", args.arch)  # a throughput fixture only
        paths = {p: measure_precision(checkpoint, p, configs, images, work, args) for p in precisions}
        ab = run_ab(checkpoint, precisions[-1], images[0], work, args) if args.ab_requests else None

    baseline = paths[precisions[0]]
    for result in paths.values():
        result["speedup_vs_baseline"] = result["served_img_s"] / baseline["served_img_s"]
        result["ceiling_speedup_vs_baseline"] = result["ceiling_img_s"] / baseline["ceiling_img_s"]
    fast = paths[precisions[-1]]
    summary = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "model": f"{args.arch} with random weights (throughput only, not a classifier), 224 px",
        "baseline": precisions[0],
        "fast_path": precisions[-1],
        # the headline ratios: the fast path (the last precision) against the baseline (the first)
        "speedup_vs_fp32": fast["speedup_vs_baseline"] if precisions[0] == "fp32" else None,
        "efficiency": fast["efficiency"],
        "vs_naive": fast["vs_naive"],
        "paths": paths,
        "ab": ab,
        "p99_target_ms": args.p99_target_ms,
        "ceiling_definition": (
            "normalise + forward + softmax on decoded 224x224 uint8 batches, without HTTP or decoding: the best of "
            "one process with all threads and one single-thread process per thread running at once"
        ),
        "efficiency_definition": "best served img/s over the ceiling at its effective batch, min(batchSize, clients)",
        "clients": args.clients,
        "torch_threads": args.threads,
        "worker_threads": args.worker_threads or "threads split between the workers",
        "seconds_per_config": {"warmup": args.warmup, "measured": args.duration},
        "machine": machine(),
        "wall_seconds": time.time() - started,
        "command": " ".join([Path(sys.executable).name, "-m", "loadtests.bench", *sys.argv[1:]]),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    (out / "results.md").write_text(table(paths, ab), encoding="utf-8")
    plot(paths, out / "throughput_vs_p95.png")
    figures.write(figures.bench_figures(summary), out)  # the docs' table (make docs-tables) when out is under results/
    print((out / "results.md").read_text())
    print(f"report: {out}")
    return summary


if __name__ == "__main__":
    main(get_args_parser().parse_args())
