"""Overload: drive a server at a multiple of its measured capacity and show that it sheds load.

    python -m loadtests.overload --random-weights vgg16_bn --duration 60        # throwaway server
    python -m loadtests.overload --url http://127.0.0.1:8080 --management http://127.0.0.1:8081

1. capacity: ``--clients`` closed-loop clients for ``--capacity-seconds``; the 200s per second.
2. overload: open-loop arrivals at ``--factor`` x capacity for ``--duration`` seconds (each request on
   its own thread, so a slow server cannot slow the arrivals down).
Reported: the queue limit (job_queue_size from the management API), offered and served rates, shed
rate (503 share), latency of accepted requests (p50/p95/p99/max) and of shed ones, anything else
(errors are counted, never dropped). Writes requests.csv, summary.json and overload.png to --output-dir.
"""

from __future__ import annotations

import argparse
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import requests

from loadtests.faults import LoadLoop
from loadtests.harness import add_target_args, default_image, target, write_results


def measure_capacity(predict_url: str, image: bytes, clients: int, seconds: float) -> float:
    """Sustained 200s per second with ``clients`` back-to-back clients (first 20% discarded as warm-up)."""
    with LoadLoop(predict_url, image, clients) as load:
        time.sleep(seconds)
    start = min(o.sent for o in load.outcomes) + seconds * 0.2
    done = [o for o in load.outcomes if o.ok and o.done >= start]
    window = max(o.done for o in done) - start if done else 0
    return len(done) / window if window > 0 else 0.0


def overload(predict_url: str, image: bytes, rate: float, seconds: float, timeout: float) -> list[dict]:
    """Open-loop arrivals at ``rate``/s for ``seconds``; one record per request, whatever happened."""
    records: list[dict] = []
    lock = threading.Lock()
    local = threading.local()
    t0 = time.monotonic()

    def one(scheduled: float) -> None:
        session = getattr(local, "session", None) or requests.Session()
        local.session = session
        sent = time.monotonic()
        try:
            r = session.post(predict_url, data=image, headers={"Content-Type": "image/jpeg"}, timeout=timeout)
            status, error = r.status_code, None
            if status == 200 and "label" not in r.json():
                error = "200 without a label"
        except (requests.RequestException, ValueError) as e:
            status, error = None, f"{type(e).__name__}"
        with lock:
            records.append(
                {"t": round(sent - t0, 4), "lag": round(sent - scheduled, 4), "status": status,
                 "latency": round(time.monotonic() - sent, 4), "error": error}
            )  # fmt: skip

    n = int(rate * seconds)
    with ThreadPoolExecutor(max_workers=min(512, max(32, int(rate * timeout)))) as pool:
        for i in range(n):
            scheduled = t0 + i / rate
            time.sleep(max(0.0, scheduled - time.monotonic()))
            pool.submit(one, scheduled)
    return sorted(records, key=lambda r: r["t"])


def summarize(records: list[dict], capacity: float, rate: float, seconds: float, queue_limit: int) -> dict:
    ok = np.array([r["latency"] for r in records if r["status"] == 200 and not r["error"]])
    shed = np.array([r["latency"] for r in records if r["status"] == 503])
    other: dict[str, int] = {}
    for r in records:
        if not ((r["status"] == 200 and not r["error"]) or r["status"] == 503):
            key = str(r["status"] if r["status"] is not None else r["error"])
            other[key] = other.get(key, 0) + 1

    def pct(a: np.ndarray, q: float) -> float | None:
        return round(float(np.percentile(a, q)), 3) if a.size else None

    span = max((r["t"] + r["latency"] for r in records), default=seconds)
    return {
        "queue_limit": queue_limit,
        "capacity_rps": round(capacity, 2),
        "offered_rps": round(rate, 2),
        "factor": round(rate / capacity, 2) if capacity else None,
        "requests": len(records),
        "accepted": int(ok.size),
        "shed_503": int(shed.size),
        "shed_rate": round(shed.size / len(records), 3) if records else None,
        "other": other,
        "served_rps": round(ok.size / span, 2) if span else None,
        "accepted_latency_s": {"p50": pct(ok, 50), "p95": pct(ok, 95), "p99": pct(ok, 99), "max": pct(ok, 100)},
        "shed_latency_s": {"p50": pct(shed, 50), "p99": pct(shed, 99), "max": pct(shed, 100)},
        "max_arrival_lag_s": round(max((r["lag"] for r in records), default=0.0), 3),
    }


def plot(records: list[dict], summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(10, 7), sharex=True)
    for status, color, label in ((200, "tab:blue", "200 accepted"), (503, "tab:red", "503 shed")):
        pts = [(r["t"], r["latency"]) for r in records if r["status"] == status]
        if pts:
            ax1.scatter(*zip(*pts, strict=True), s=6, color=color, label=label)
    ax1.set_ylabel("latency (s)")
    ax1.set_title(
        f"{summary['factor']}x overload: queue limit {summary['queue_limit']}, shed rate {summary['shed_rate']}"
    )
    ax1.legend()
    end = int(max((r["t"] for r in records), default=0)) + 1
    bins = np.arange(0, end + 1)
    for status, color, label in ((200, "tab:blue", "200/s"), (503, "tab:red", "503/s")):
        ax2.hist([r["t"] for r in records if r["status"] == status], bins=bins, color=color, alpha=0.6, label=label)
    ax2.set_xlabel("seconds since the overload began (request sent)")
    ax2.set_ylabel("requests per second")
    ax2.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_target_args(p)
    p.add_argument("--image", default=None, help="JPEG to send (default: first art5 val image, else generated)")
    p.add_argument("--factor", type=float, default=3.0, help="offered load / capacity (default: %(default)s)")
    p.add_argument("--rate", type=float, default=None, help="offered requests/s; skips the capacity phase")
    p.add_argument("--duration", type=float, default=60, help="overload seconds (default: %(default)s)")
    p.add_argument("--capacity-seconds", type=float, default=20, help="capacity phase (default: %(default)s)")
    p.add_argument("--clients", type=int, default=16, help="closed-loop clients for capacity (default: %(default)s)")
    p.add_argument("--timeout", type=float, default=120, help="client timeout per request (default: %(default)s)")
    p.add_argument(
        "--output-dir", default="loadtests/results/overload", help="CSV, JSON and PNG (default: %(default)s)"
    )
    return p


def main(args: argparse.Namespace) -> dict:
    image = Path(args.image).read_bytes() if args.image else default_image()
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    with target(args) as t:
        queue_limit = t.queue_limit()
        capacity = measure_capacity(t.predict_url, image, args.clients, args.capacity_seconds)
        rate = args.rate or args.factor * capacity
        if rate <= 0:
            raise SystemExit("capacity measured as 0 requests/s: is the model serving?")
        print(f"{t.description}: queue limit {queue_limit}, capacity {capacity:.2f} req/s; offering {rate:.2f} req/s")
        time.sleep(2)  # let the capacity phase's queue drain
        records = overload(t.predict_url, image, rate, args.duration, args.timeout)
        summary = summarize(records, capacity, rate, args.duration, queue_limit)
        summary["target"] = t.description
    fields = ["t", "lag", "status", "latency", "error"]
    write_results(out, "requests.csv", records, fields, summary, plot, "overload.png")
    return summary


if __name__ == "__main__":
    main(get_args_parser().parse_args())
