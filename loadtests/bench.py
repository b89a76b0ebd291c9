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
``loadtests/results/bench-<timestamp>/``: ``results.md`` (table), ``throughput_vs_p95.png``,
``summary.json`` (best configuration: highest served throughput with p99 under ``--p99-target-ms``).
Efficiency = served / ceiling at the configuration's effective batch size (its batchSize, at most
the number of clients, since a closed loop never has more requests outstanding). ``--threads``
(default: the core count) sets torch's threads in-process and in the naive server, and is split
between TorchServe's workers (OMP_NUM_THREADS), so every contender gets the same cores.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import matplotlib
import numpy as np
import psutil
import requests
import torch
import yaml

from deploy import ROOT
from deploy.archive import DEFAULT_MODEL_CONFIG, build_archive
from deploy.server import Ports, free_port, start_server
from handlers import MODEL_NAME
from handlers.classifier import ArtClassifier
from loadtests.harness import random_checkpoint
from tagging.client import Client
from training import DATA_DIR

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

SHARED_NOTE = "figures vary with other load on the machine (see load_average_1_5_15m); ratios are same-run"


@dataclass(frozen=True)
class ServeConfig:
    batch: int
    delay_ms: int
    workers: int

    @property
    def label(self) -> str:
        return f"batch {self.batch}, delay {self.delay_ms} ms, {self.workers} worker{'s' * (self.workers > 1)}"


DEFAULT_CONFIGS = "1:0:1,4:10:1,8:50:1,4:10:2"


def parse_configs(text: str) -> list[ServeConfig]:
    """``"4:10:1,8:50:1"`` (batch:delay_ms:workers, comma-separated) -> configs."""
    return [ServeConfig(*(int(x) for x in item.split(":"))) for item in text.split(",") if item.strip()]


def machine() -> dict:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.processor(),
    )
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "load_average_1_5_15m": [round(x, 2) for x in os.getloadavg()],
        "note": SHARED_NOTE,
    }


# ---------------------------------------------------------------------------------------------------
# Measurements.


def forward_rate(classifier: ArtClassifier, batch: int, min_seconds: float, barrier=None) -> float:
    """Images/s of ``classifier.predict`` on decoded uint8 batches (one untimed warm-up)."""
    crop = classifier.preprocess.crop
    x = torch.randint(0, 256, (batch, 3, crop, crop), dtype=torch.uint8)
    classifier.predict(x)
    if barrier is not None:
        barrier.wait()
    start, n = time.perf_counter(), 0
    while n < 2 or time.perf_counter() - start < min_seconds:
        classifier.predict(x)
        n += 1
    return n * batch / (time.perf_counter() - start)


def _one_thread_worker(checkpoint: Path, batch: int, min_seconds: float, barrier, results) -> None:
    torch.set_num_threads(1)
    results.put(forward_rate(ArtClassifier.load(checkpoint), batch, min_seconds, barrier))


def ceiling(classifier: ArtClassifier, checkpoint: Path, batch: int, min_seconds: float, threads: int) -> dict:
    """The best of: one process with ``threads`` torch threads, and ``threads`` single-thread processes
    at once (what several TorchServe workers do), each with ``checkpoint``'s classifier. Both are measured;
    on a CPU shared with other jobs multi-threaded torch can lose much more to contention than independent
    single-thread processes."""
    rates = {"in_process": forward_rate(classifier, batch, min_seconds)}
    if threads > 1:
        ctx = multiprocessing.get_context("spawn")
        barrier, results = ctx.Barrier(threads), ctx.Queue()
        procs = [
            ctx.Process(target=_one_thread_worker, args=(checkpoint, batch, min_seconds, barrier, results))
            for _ in range(threads)
        ]
        for proc in procs:
            proc.start()
        rates[f"{threads}_processes"] = sum(results.get(timeout=600) for _ in procs)
        for proc in procs:
            proc.join(60)
    return {"img_s": max(rates.values()), **rates}


def preprocess_ms(images: list[Path], classifier: ArtClassifier) -> float:
    start = time.perf_counter()
    for path in images:
        classifier.decode(path.read_bytes())
    return (time.perf_counter() - start) * 1000 / len(images)


def drive(url: str, images: list[Path], clients: int, seconds: float) -> dict:
    """``clients`` closed-loop clients for ``seconds``; throughput counts until the last response."""
    client = Client(url, timeout=120, retries=0)
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    start = time.monotonic()
    deadline = start + seconds
    last = [start]

    def loop(offset: int) -> None:
        i = offset
        while time.monotonic() < deadline:
            result = client.classify(images[i % len(images)])
            i += clients
            with lock:
                last[0] = max(last[0], time.monotonic())
                if result.ok:
                    latencies.append(result.seconds * 1000)
                else:
                    errors.append(result.error or "?")

    threads = [threading.Thread(target=loop, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = last[0] - start
    if not latencies:
        return {"img_s": 0.0, "requests": 0, "errors": len(errors), "first_error": errors[:1]}
    ms = np.array(latencies)
    return {
        "img_s": len(latencies) / elapsed,
        "requests": len(latencies),
        "errors": len(errors),
        "first_error": errors[:1],
        "p50_ms": float(np.percentile(ms, 50)),
        "p95_ms": float(np.percentile(ms, 95)),
        "p99_ms": float(np.percentile(ms, 99)),
        "seconds": elapsed,
    }


def measure(url: str, images: list[Path], args: argparse.Namespace) -> dict:
    drive(url, images, args.clients, args.warmup)
    return drive(url, images, args.clients, args.duration)


def write_model_config(path: Path, config: ServeConfig) -> Path:
    settings = yaml.safe_load(DEFAULT_MODEL_CONFIG.read_text(encoding="utf-8"))
    settings.update(
        batchSize=config.batch, maxBatchDelay=config.delay_ms, minWorkers=config.workers, maxWorkers=config.workers
    )
    path.write_text(yaml.safe_dump(settings, sort_keys=False), encoding="utf-8")
    return path


def thread_env(threads: int) -> dict[str, str]:
    return {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}


def run_served(checkpoint: Path, config: ServeConfig, images: list[Path], work: Path, args) -> dict:
    folder = work / f"b{config.batch}-d{config.delay_ms}-w{config.workers}"
    folder.mkdir()
    model_config = write_model_config(folder / "model-config.yaml", config)
    mar = build_archive(checkpoint, folder / "store", model_config=model_config)
    env = thread_env(max(1, args.threads // config.workers))  # the same cores, split between the workers
    server = start_server(mar, folder / "run", Ports.free(), bind="127.0.0.1", env=env)
    try:
        server.wait_ready(300)
        return measure(server.predict_url, images, args)
    finally:
        server.stop()


def run_naive(checkpoint: Path, images: list[Path], args) -> dict:
    port = free_port()
    command = [sys.executable, "-m", "loadtests.naive_server", "--checkpoint", str(checkpoint), "--port", str(port)]
    env = {**os.environ, **thread_env(args.threads)}
    proc = subprocess.Popen(command, cwd=ROOT, stdin=subprocess.DEVNULL, env=env)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                requests.get(url, timeout=2)
                break
            except requests.RequestException:
                if proc.poll() is not None:
                    raise RuntimeError(f"naive server exited with {proc.returncode}") from None
                time.sleep(0.5)
        return measure(f"{url}/predictions/{MODEL_NAME}", images, args)
    finally:
        proc.terminate()
        proc.wait(30)


# ---------------------------------------------------------------------------------------------------
# Report.


def best_config(served: list[dict], p99_target_ms: float) -> dict:
    within = [r for r in served if r.get("p99_ms", float("inf")) < p99_target_ms and not r["errors"]]
    return max(within or served, key=lambda r: r["img_s"])


def table(ceilings: dict[int, float], served: list[dict], naive: dict, prep_ms: float) -> str:
    rows = [
        "| configuration | img/s | p50 ms | p95 ms | p99 ms | requests | errors | served/ceiling | vs naive |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in [*served, naive]:
        efficiency = f"{r['efficiency']:.2f}" if "efficiency" in r else "-"
        rows.append(
            f"| {r['name']} | {r['img_s']:.2f} | {r.get('p50_ms', 0):.0f} | {r.get('p95_ms', 0):.0f} | "
            f"{r.get('p99_ms', 0):.0f} | {r['requests']} | {r['errors']} | {efficiency} | "
            f"{r['img_s'] / naive['img_s']:.2f}x |"
        )
    rows.append("")
    rows += [f"- ceiling, batch {b}: {v:.2f} img/s (forward pass only)" for b, v in sorted(ceilings.items())]
    rows.append(
        f"- preprocessing (decode + resize + crop of a val JPEG): {prep_ms:.1f} ms per image, not in the ceiling"
    )
    return "\n".join(rows) + "\n"


def plot(served: list[dict], naive: dict, ceilings: dict[int, float], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(8, 5))
    for r in served:
        c = r["config"]
        short = f"b{c['batch']} d{c['delay_ms']} w{c['workers']}"
        ax.scatter(r.get("p95_ms", 0), r["img_s"], color="tab:blue")
        ax.annotate(short, (r.get("p95_ms", 0), r["img_s"]), fontsize=8, xytext=(4, -10), textcoords="offset points")
    ax.scatter(naive.get("p95_ms", 0), naive["img_s"], color="tab:red", marker="s", label="naive (no batching)")
    for b, v in sorted(ceilings.items()):
        ax.axhline(v, linestyle="--", linewidth=0.8, color="tab:gray")
        ax.annotate(f"ceiling b{b}", (0, v), fontsize=8, xytext=(2, 2), textcoords="offset points")
    p95s = [r.get("p95_ms", 0) for r in [*served, naive]]
    ax.set(xlabel="p95 latency (ms)", ylabel="throughput (images/s)", xlim=(0, max(p95s) * 1.25))
    ax.set_title("VGG16-BN (random weights) on CPU; b=batchSize d=maxBatchDelay ms w=workers", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------------


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
    p.add_argument("--arch", default="vgg16_bn", help="model preset (default: %(default)s)")
    p.add_argument("--images", default=str(DATA_DIR / "val"), help="JPEG folder (default: %(default)s)")
    p.add_argument("--max-images", type=int, default=64, help="images cycled through (default: %(default)s)")
    p.add_argument("--p99-target-ms", type=float, default=3000, help="best config's p99 bound (default: %(default)s)")
    p.add_argument("--out", default=None, help="default: loadtests/results/bench-<UTC timestamp>")
    return p


def main(args: argparse.Namespace) -> dict:
    out = Path(args.out or ROOT / "loadtests" / "results" / f"bench-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}")
    out.mkdir(parents=True, exist_ok=True)
    configs = parse_configs(args.configs)
    images = sorted(Path(args.images).rglob("*.jpg"))[: args.max_images]
    if not images:
        raise SystemExit(f"no .jpg images under {args.images}: pass --images")
    torch.set_num_threads(args.threads)
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="artserve-bench-") as tmp:
        work = Path(tmp)
        checkpoint = random_checkpoint(work / f"random-{args.arch}.pt", args.arch)  # a throughput fixture only
        classifier = ArtClassifier.load(checkpoint)

        batches = sorted({min(c.batch, args.clients) for c in configs} | {1})
        ceiling_runs = {b: ceiling(classifier, checkpoint, b, args.ceiling_seconds, args.threads) for b in batches}
        ceilings = {b: run["img_s"] for b, run in ceiling_runs.items()}
        prep = preprocess_ms(images[:32], classifier)
        print(f"ceiling img/s by batch: { {b: round(v, 2) for b, v in ceilings.items()} }; preprocess {prep:.1f} ms")
        del classifier

        naive = {"name": "naive (1 request = 1 forward)", **run_naive(checkpoint, images, args)}
        print(f"naive: {naive['img_s']:.2f} img/s, p99 {naive.get('p99_ms', 0):.0f} ms")
        served = []
        for config in configs:
            result = run_served(checkpoint, config, images, work, args)
            result.update(name=config.label, config=asdict(config))
            result["efficiency"] = result["img_s"] / ceilings[min(config.batch, args.clients)]
            served.append(result)
            print(f"{config.label}: {result['img_s']:.2f} img/s, p99 {result.get('p99_ms', 0):.0f} ms")

    best = best_config(served, args.p99_target_ms)
    summary = {
        "model": f"{args.arch} with random weights (throughput only, not a classifier)",
        "ceiling_img_s": ceilings[min(best["config"]["batch"], args.clients)],
        "served_img_s": best["img_s"],
        "naive_img_s": naive["img_s"],
        "efficiency": best["efficiency"],
        "served_over_naive": best["img_s"] / naive["img_s"] if naive["img_s"] else None,
        "p95_ms": best.get("p95_ms"),
        "p99_ms": best.get("p99_ms"),
        "config": best["config"],
        "p99_target_ms": args.p99_target_ms,
        "p99_target_met": best.get("p99_ms", float("inf")) < args.p99_target_ms,
        "ceiling_definition": (
            "normalise + forward + softmax on decoded 224x224 uint8 batches, without HTTP or decoding: the best of "
            "one process with all threads and one single-thread process per thread running at once"
        ),
        "ceiling_img_s_by_batch": ceilings,
        "ceiling_runs": ceiling_runs,
        "preprocess_ms_per_image": prep,
        "clients": args.clients,
        "torch_threads": args.threads,
        "seconds_per_config": {"warmup": args.warmup, "measured": args.duration},
        "configs": served,
        "naive": naive,
        "machine": machine(),
        "wall_seconds": time.time() - started,
        "command": " ".join([Path(sys.executable).name, "-m", "loadtests.bench", *sys.argv[1:]]),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    (out / "results.md").write_text(table(ceilings, served, naive, prep), encoding="utf-8")
    plot(served, naive, ceilings, out / "throughput_vs_p95.png")
    print((out / "results.md").read_text())
    print(f"best: {best['name']}: efficiency {best['efficiency']:.2f}, {summary['served_over_naive']:.2f}x naive")
    print(f"report: {out}")
    return summary


if __name__ == "__main__":
    main(get_args_parser().parse_args())
