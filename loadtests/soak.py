"""Soak: steady load for a set time while sampling the resident memory of TorchServe's processes.

    python -m loadtests.soak --random-weights tiny_vgg --duration 300       # throwaway server
    python -m loadtests.soak --url http://127.0.0.1:8080 --management http://127.0.0.1:8081 --duration 3600

``--clients`` closed-loop clients send one image back to back. Every ``--interval`` seconds the RSS of
the frontend (the Java process listening on the inference port) and of each worker (the pids the
management API lists, with their children) goes to rss.csv with the requests served so far; rss.png
plots both over time. Growth is reported as the mean RSS of the last ``--window`` seconds minus that of
the first ``--window`` seconds after ``--warmup`` (so start-up allocation is not counted as a leak).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import psutil

from loadtests.faults import LoadLoop
from loadtests.harness import Target, add_target_args, default_image, target, write_results

MB = 1024 * 1024


def rss_mb(pid: int | None, children: bool = False) -> float | None:
    if pid is None:
        return None
    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)] if children else [proc]
        return sum(p.memory_info().rss for p in procs) / MB
    except psutil.Error:
        return None


def sample(t: Target, frontend: int | None, load: LoadLoop, t0: float) -> dict:
    pids = t.worker_pids()
    worker = [rss_mb(pid, children=True) for pid in pids]
    outcomes = list(load.outcomes)
    return {
        "t": round(time.monotonic() - t0, 2),
        "frontend_rss_mb": round(rss_mb(frontend) or float("nan"), 1),
        "workers_rss_mb": round(sum(w for w in worker if w is not None), 1),
        "worker_pids": " ".join(map(str, pids)),
        "ok": sum(o.ok for o in outcomes),
        "failed": sum(not o.ok for o in outcomes),
    }


def growth(rows: list[dict], key: str, warmup: float, window: float) -> dict:
    t = np.array([r["t"] for r in rows])
    v = np.array([r[key] for r in rows], dtype=float)
    first = v[(t >= warmup) & (t < warmup + window)]
    last = v[t >= t.max() - window]
    if not first.size or not last.size:
        return {"first_mb": None, "last_mb": None, "growth_mb": None, "growth_pct": None}
    a, b = float(np.nanmean(first)), float(np.nanmean(last))
    return {"first_mb": round(a, 1), "last_mb": round(b, 1), "growth_mb": round(b - a, 1),
            "growth_pct": round(100 * (b - a) / a, 2)}  # fmt: skip


def plot(rows: list[dict], summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [r["t"] / 60 for r in rows]
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(10, 7), sharex=True)
    ax1.plot(t, [r["frontend_rss_mb"] for r in rows], label="frontend (Java)")
    ax1.plot(t, [r["workers_rss_mb"] for r in rows], label="worker(s) (Python)")
    ax1.set_ylabel("resident memory (MiB)")
    ax1.set_title(f"soak: {summary['target']}, {summary['requests_ok']} requests served")
    ax1.legend()
    rate = np.diff([r["ok"] for r in rows]) / np.maximum(np.diff([r["t"] for r in rows]), 1e-9)
    ax2.plot(t[1:], rate, color="tab:green")
    ax2.set_ylabel("requests/s (200)")
    ax2.set_xlabel("minutes")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_target_args(p)
    p.add_argument("--image", default=None, help="JPEG to send (default: first art5 val image, else generated)")
    p.add_argument("--duration", type=float, default=300, help="seconds of load (default: %(default)s)")
    p.add_argument("--clients", type=int, default=4, help="closed-loop clients (default: %(default)s)")
    p.add_argument("--interval", type=float, default=2.0, help="seconds between samples (default: %(default)s)")
    p.add_argument("--warmup", type=float, default=30, help="seconds excluded from growth (default: %(default)s)")
    p.add_argument("--window", type=float, default=30, help="averaging window for growth (default: %(default)s)")
    p.add_argument("--output-dir", default="loadtests/results/soak", help="CSV, JSON and PNG (default: %(default)s)")
    return p


def main(args: argparse.Namespace) -> dict:
    image = Path(args.image).read_bytes() if args.image else default_image()
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    with target(args) as t:
        frontend = t.frontend_pid()
        t0 = time.monotonic()
        with LoadLoop(t.predict_url, image, args.clients, max_per_client=10**8) as load:
            while time.monotonic() - t0 < args.duration:
                rows.append(sample(t, frontend, load, t0))
                time.sleep(args.interval)
        rows.append(sample(t, frontend, load, t0))
        pids = {r["worker_pids"] for r in rows}
        summary = {
            "target": t.description,
            "duration_s": args.duration,
            "clients": args.clients,
            "requests_ok": rows[-1]["ok"],
            "requests_failed": rows[-1]["failed"],
            "requests_unaccounted": load.attempts - len(load.outcomes),
            "worker_restarts": len(pids) - 1,
            "frontend": growth(rows, "frontend_rss_mb", args.warmup, args.window),
            "workers": growth(rows, "workers_rss_mb", args.warmup, args.window),
        }
    write_results(out, "rss.csv", rows, list(rows[0]), summary, plot, "rss.png")
    return summary


if __name__ == "__main__":
    main(get_args_parser().parse_args())
