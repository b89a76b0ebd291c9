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
import re
import shutil
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

from deploy import ROOT, archive
from deploy.archive import DEFAULT_MODEL_CONFIG, batching_overrides, build_archive
from deploy.server import Ports, free_port, start_server
from handlers import MODEL_NAME
from handlers.classifier import ArtClassifier
from loadtests.harness import random_checkpoint
from loadtests.metrics import scrape_counters
from tagging.client import Client, is_prediction
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
    def overrides(self) -> dict[str, int]:
        """The model-config keys this configuration sets (``deploy.archive``'s batching overrides)."""
        return batching_overrides(self.batch, self.delay_ms, self.workers)

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


def _one_thread_worker(checkpoint: Path, precision: str, batch: int, min_seconds: float, barrier, results) -> None:
    torch.set_num_threads(1)
    results.put(forward_rate(ArtClassifier.load(checkpoint, precision=precision), batch, min_seconds, barrier))


def ceiling(
    classifier: ArtClassifier, checkpoint: Path, precision: str, batch: int, min_seconds: float, threads: int
) -> dict:
    """The best of: one process with ``threads`` torch threads, and ``threads`` single-thread processes
    at once (what several TorchServe workers do), each with ``checkpoint``'s classifier. Both are measured;
    on a CPU shared with other jobs multi-threaded torch can lose much more to contention than independent
    single-thread processes."""
    rates = {"in_process": forward_rate(classifier, batch, min_seconds)}
    if threads > 1:
        ctx = multiprocessing.get_context("spawn")
        barrier, results = ctx.Barrier(threads), ctx.Queue()
        procs = [
            ctx.Process(target=_one_thread_worker, args=(checkpoint, precision, batch, min_seconds, barrier, results))
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


def closed_loop(
    url: str, images: list[Path], clients: int, seconds: float, accept=is_prediction
) -> tuple[list[float], list[str], float]:
    """``clients`` closed-loop clients for ``seconds``: (latencies in ms, errors, seconds until the last answer);
    a 200 whose body fails ``accept`` is an error."""
    client = Client(url, timeout=120, retries=0, accept=accept)
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
    return latencies, errors, last[0] - start


def summarise(latencies: list[float], errors: list[str], elapsed: float) -> dict:
    """Throughput (answers per second of ``elapsed``) and latency percentiles of a closed-loop run."""
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


def drive(url: str, images: list[Path], clients: int, seconds: float) -> dict:
    """``clients`` closed-loop clients for ``seconds``; throughput counts until the last response."""
    return summarise(*closed_loop(url, images, clients, seconds))


def cpu_seconds(roots: dict[str, int]) -> dict:
    """CPU seconds (user + system) so far: this process (the load generator's threads) as ``client``; each process
    in the tree under each of ``roots`` (role -> pid): TorchServe's ``java`` as ``frontend``, its Python model
    workers as ``worker``, the rest (its launcher script, the system-metrics collector it starts every minute)
    under the root's role; and the whole machine's busy and idle time."""
    own = psutil.Process().cpu_times()
    by_pid: dict[int, tuple[str, float]] = {os.getpid(): ("client", own.user + own.system)}
    for role, pid in roots.items():
        try:
            root = psutil.Process(pid)
            tree = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
        for proc in tree:
            try:
                times, name, command = proc.cpu_times(), proc.name(), " ".join(proc.cmdline())
            except psutil.NoSuchProcess:
                continue
            kind = "frontend" if name == "java" else "worker" if "model_service_worker" in command else role
            by_pid[proc.pid] = (kind, times.user + times.system)
    machine = psutil.cpu_times()
    idle = machine.idle + getattr(machine, "iowait", 0.0)
    return {"processes": by_pid, "busy": sum(machine) - idle, "idle": idle}


def cpu_shares(before: dict, after: dict) -> dict:
    """Where the machine's CPU went between two :func:`cpu_seconds`, as shares of all cores' time: per role,
    ``other`` (every process outside the measured ones) and ``idle``. A process that started in between counts
    from zero."""
    total = (after["busy"] + after["idle"]) - (before["busy"] + before["idle"])
    if total <= 0:
        return {}
    shares: dict[str, float] = {}
    for pid, (role, seconds) in after["processes"].items():
        start = before["processes"].get(pid, (role, 0.0))[1]
        shares[role] = shares.get(role, 0.0) + max(0.0, seconds - start) / total
    busy = (after["busy"] - before["busy"]) / total
    shares["other"] = max(0.0, busy - sum(shares.values()))
    shares["idle"] = (after["idle"] - before["idle"]) / total
    return {k: round(v, 3) for k, v in shares.items()}


# The handler's own counters (handlers/art_handler.py): milliseconds in handle() and in its decode step, batches.
WORKER_COUNTERS = ("ArtserveHandlerMs", "ArtservePreprocessMs", "ArtserveBatches", "ArtserveImages")


def worker_time(before: dict[str, float], after: dict[str, float], seconds: float, workers: int) -> dict:
    """Where TorchServe's workers spent the window, as shares of ``seconds`` x ``workers``: ``in_handler`` (all
    of handle()), split into ``decode`` (checks, JPEG decode, crop and resize) and ``predict`` (normalise, forward
    pass, softmax, answers); ``outside_handler`` is the rest: the worker waiting for its next batch, reading it
    and writing the answers (TorchServe's own IPC). Empty when no batch was counted."""
    delta = {name: after[name] - before[name] for name in WORKER_COUNTERS}
    if delta["ArtserveBatches"] <= 0 or seconds <= 0:
        return {}
    window_ms = seconds * 1000 * workers
    handler, decode = delta["ArtserveHandlerMs"], delta["ArtservePreprocessMs"]
    return {
        "in_handler": round(handler / window_ms, 3),
        "decode": round(decode / window_ms, 3),
        "predict": round((handler - decode) / window_ms, 3),
        "outside_handler": round(1 - handler / window_ms, 3),
        "mean_batch": round(delta["ArtserveImages"] / delta["ArtserveBatches"], 2),
        "outside_ms_per_batch": round((window_ms - handler) / delta["ArtserveBatches"], 1),
    }


def measure(
    url: str,
    images: list[Path],
    args: argparse.Namespace,
    server: dict[str, int] | None = None,
    metrics_url: str | None = None,
    workers: int = 1,
) -> dict:
    """Warm up, then measure; ``server`` (role -> pid) adds where the CPU went while measuring (``cpu``), and
    TorchServe's ``metrics_url`` where its workers' time went (``worker_time``, with ``predict_img_s``: the rate of
    the handler's predict step while it runs, to set beside the in-process ceiling)."""
    drive(url, images, args.clients, args.warmup)
    counters = scrape_counters(metrics_url, names=WORKER_COUNTERS) if metrics_url else None
    before = cpu_seconds(server or {})
    start = time.monotonic()
    result = drive(url, images, args.clients, args.duration)
    elapsed = time.monotonic() - start
    result["cpu"] = cpu_shares(before, cpu_seconds(server or {}))
    if counters is not None:
        time.sleep(1.0)  # the workers' metric lines reach the frontend asynchronously
        after = scrape_counters(metrics_url, names=WORKER_COUNTERS)
        spent = worker_time(counters, after, elapsed, workers)
        if spent.get("predict", 0) > 0:  # served = predict share x the predict step's own rate in the workers
            spent["predict_img_s"] = round(result["img_s"] / spent["predict"], 2)
        result["worker_time"] = spent
    return result


def write_model_config(path: Path, config: ServeConfig) -> Path:
    """The checked-in model-config.yaml with ``config``'s batching, for archives not built by ``deploy.archive``."""
    return archive.write_model_config(DEFAULT_MODEL_CONFIG, path, config.overrides)


def thread_env(threads: int) -> dict[str, str]:
    return {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}


def run_served(checkpoint: Path, precision: str, config: ServeConfig, images: list[Path], work: Path, args) -> dict:
    folder = work / f"{precision}-b{config.batch}-d{config.delay_ms}-w{config.workers}"
    folder.mkdir()
    mar = build_archive(checkpoint, folder / "store", batching=config.overrides)
    # the same cores, split between the workers, unless --worker-threads oversubscribes them on purpose
    env = thread_env(args.worker_threads or max(1, args.threads // config.workers))
    env["ARTSERVE_PRECISION"] = precision
    server = start_server(mar, folder / "run", Ports.free(), bind="127.0.0.1", env=env)
    try:
        server.wait_ready(300)
        return measure(
            server.predict_url, images, args, {"torchserve_other": server.pid}, server.metrics_url, config.workers
        )
    finally:
        server.stop()


def run_naive(checkpoint: Path, precision: str, images: list[Path], args) -> dict:
    port = free_port()
    command = [sys.executable, "-m", "loadtests.naive_server", "--checkpoint", str(checkpoint), "--port", str(port)]
    command += ["--precision", precision]
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
        return measure(f"{url}/predictions/{MODEL_NAME}", images, args, {"server": proc.pid})
    finally:
        proc.terminate()
        proc.wait(30)


def parse_ab(text: str) -> dict:
    """The figures of Apache Bench's report: requests/s, failures, non-2xx answers, latency percentiles (ms)."""

    def number(pattern: str, default: float | None = None) -> float | None:
        match = re.search(pattern, text, re.MULTILINE)
        return float(match.group(1)) if match else default

    return {
        "requests_per_second": number(r"^Requests per second:\s+([\d.]+)"),
        "complete": int(number(r"^Complete requests:\s+(\d+)", 0)),
        "failed": int(number(r"^Failed requests:\s+(\d+)", 0)),
        "non_2xx": int(number(r"^Non-2xx responses:\s+(\d+)", 0)),
        "p50_ms": number(r"^\s+50%\s+(\d+)"),
        "p95_ms": number(r"^\s+95%\s+(\d+)"),
        "p99_ms": number(r"^\s+99%\s+(\d+)"),
    }


def run_ab(checkpoint: Path, precision: str, image: Path, work: Path, args) -> dict:
    """``ab -k`` (HTTP/1.0 with keep-alive, as TorchServe's published figures) against the checked-in model
    configuration: our figures beside TorchServe's on the same client."""
    ab = shutil.which("ab")
    if ab is None:
        return {"skipped": "ab is not installed (apt-get install apache2-utils)"}
    folder = work / "ab"
    folder.mkdir()
    mar = build_archive(checkpoint, folder / "store")
    env = {**thread_env(args.threads), "ARTSERVE_PRECISION": precision}
    server = start_server(mar, folder / "run", Ports.free(), bind="127.0.0.1", env=env)
    try:
        server.wait_ready(300)
        command = [ab, "-k", "-q", "-n", str(args.ab_requests), "-c", str(args.ab_concurrency), "-s", "120"]
        command += ["-p", str(image), "-T", "image/jpeg", server.predict_url]
        subprocess.run(command[:4] + ["-n", str(args.ab_concurrency * 2)] + command[6:], capture_output=True)  # warm
        done = subprocess.run(command, capture_output=True, text=True, timeout=900)
    finally:
        server.stop()
    result = parse_ab(done.stdout)
    result.update(
        command=" ".join(["ab", *command[1:-1], "URL"]),
        precision=precision,
        requests=args.ab_requests,
        concurrency=args.ab_concurrency,
        returncode=done.returncode,
    )
    return result


# ---------------------------------------------------------------------------------------------------
# Report.


def best_config(served: list[dict], p99_target_ms: float) -> dict:
    within = [r for r in served if r.get("p99_ms", float("inf")) < p99_target_ms and not r["errors"]]
    return max(within or served, key=lambda r: r["img_s"])


def table(paths: dict[str, dict], ab: dict | None) -> str:
    rows = [
        "| configuration | img/s | p50 ms | p95 ms | p99 ms | requests | errors | served/ceiling | vs naive |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for path in paths.values():
        naive = path["naive"]
        for r in [*path["configs"], naive]:
            efficiency = f"{r['efficiency']:.2f}" if "efficiency" in r else "-"
            vs_naive = r["img_s"] / naive["img_s"] if naive["img_s"] else 0.0
            rows.append(
                f"| {r['name']} | {r['img_s']:.2f} | {r.get('p50_ms', 0):.0f} | {r.get('p95_ms', 0):.0f} | "
                f"{r.get('p99_ms', 0):.0f} | {r['requests']} | {r['errors']} | {efficiency} | {vs_naive:.2f}x |"
            )
    rows.append("")
    for path in paths.values():
        ceilings = ", ".join(f"batch {b}: {v:.2f}" for b, v in sorted(path["ceiling_img_s_by_batch"].items()))
        rows.append(
            f"- {path['precision']}: ceiling img/s {ceilings}; preprocessing {path['preprocess_ms_per_image']:.1f} "
            f"ms/image (not in the ceiling); best served {path['served_img_s']:.2f} img/s = "
            f"{path['speedup_vs_baseline']:.2f}x the baseline, efficiency {path['efficiency']:.2f}, "
            f"{path['vs_naive']:.2f}x naive"
        )
    if ab:
        rows.append(
            f"- ab -k -c {ab['concurrency']} -n {ab['requests']} ({ab['precision']}, checked-in configuration): "
            f"{ab['requests_per_second']:.1f} req/s, p50 {ab['p50_ms']} ms, p99 {ab['p99_ms']} ms, "
            f"{ab['failed']} failed, {ab['non_2xx']} non-2xx"
        )
    rows += ["", "Where the CPU went while measuring (shares of all cores' time; `other` = every other process):", ""]
    for path in paths.values():
        for r in [*path["configs"], path["naive"]]:
            cpu = ", ".join(f"{role} {share:.2f}" for role, share in r.get("cpu", {}).items())
            rows.append(f"- {r['name']}: {cpu or 'not measured'}")
    rows += ["", "Where TorchServe's workers' time went (the handler's counters; shares of the window x workers):", ""]
    for path in paths.values():
        for r in path["configs"]:
            spent = ", ".join(f"{k} {v}" for k, v in r.get("worker_time", {}).items())
            rows.append(f"- {r['name']}: {spent or 'not measured'}")
    return "\n".join(rows) + "\n"


def plot(paths: dict[str, dict], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(8, 5))
    for result, colour in zip(paths.values(), ("tab:blue", "tab:green", "tab:purple", "tab:orange"), strict=False):
        for r in result["configs"]:
            c, xy = r["config"], (r.get("p95_ms", 0), r["img_s"])
            ax.scatter(*xy, color=colour)
            label = f"b{c['batch']} d{c['delay_ms']} w{c['workers']}"
            ax.annotate(label, xy, fontsize=8, xytext=(4, -10), textcoords="offset points")
        naive = result["naive"]
        legend = f"{result['precision']}: served (dots), naive (square)"
        ax.scatter(naive.get("p95_ms", 0), naive["img_s"], color=colour, marker="s", label=legend)
        ax.axhline(max(result["ceiling_img_s_by_batch"].values()), linestyle="--", linewidth=0.8, color=colour)
    ax.set(xlabel="p95 latency (ms)", ylabel="throughput (images/s)")
    ax.set_xlim(left=0)
    ax.set_title("VGG16-BN (random weights) on CPU; dashed: best ceiling; b=batch d=delay ms w=workers", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
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
    print((out / "results.md").read_text())
    print(f"report: {out}")
    return summary


if __name__ == "__main__":
    main(get_args_parser().parse_args())
