"""make bench's measurements: the in-process ceiling, closed-loop clients, and where the CPU and the workers'
time went while a server was measured."""

from __future__ import annotations

import argparse
import multiprocessing
import os
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import torch

from handlers.classifier import ArtClassifier
from loadtests.metrics import scrape_counters
from tagging.client import Client, is_prediction


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
