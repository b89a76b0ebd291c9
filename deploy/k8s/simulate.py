"""Replay a day of traffic with a spike through the HPA's rules: replicas and queue time over time.

    python -m deploy.k8s.simulate --replica-img-s 5.0 --cold-start-s 12 [--out deploy/k8s/capacity.png]

The autoscaler is Kubernetes' own algorithm (pkg/controller/podautoscaler), in deploy/k8s/hpa.py: every 15 s,
the replica calculator on each metric, then the HPA manifest's ``behavior`` and min/max replicas.

The serving side is a model, not a measurement: each ready replica processes ``--replica-img-s``
images/s (the measured per-replica throughput) and gets an equal share of the traffic. Its queue
time is the M/D/1 wait ``rho / (2 mu (1 - rho))`` plus, when arrivals exceed capacity, the backlog
over the service rate; a replica queues at most ``job_queue_size`` (64) requests and the rest are
refused (503). The HPA sees the request-weighted mean queue time of the last minute (the adapter's
``rate(...[1m])``), from pods that have been ready for 30 s (two scrapes). A new pod serves after
``--pod-start-s`` (scheduling, image pull, container start: an assumption) plus ``--cold-start-s``
(archive step + model load to READY, measured by ``python -m loadtests.cold_start``).
"""

from __future__ import annotations

import argparse
import json
import math
from collections import deque
from dataclasses import replace
from pathlib import Path

import numpy as np
import yaml

from deploy.k8s.hpa import QUEUE_METRIC, RATE_METRIC, SYNC_PERIOD_S, Autoscaler, HpaSpec

K8S = Path(__file__).resolve().parent
METRIC_WINDOW_S = 60
METRICS_AFTER_READY_S = 30
JOB_QUEUE_SIZE = 64


def daily_traffic(seconds: int, peak: float, spike_at_h: float, spike_factor: float, spike_min: float) -> np.ndarray:
    """Images/s for each second of a day: a trough at 04:00, a peak at 16:00, and a spike."""
    t = np.arange(seconds) / 3600.0
    curve = peak * (0.1 + 0.9 * (0.5 - 0.5 * np.cos(2 * np.pi * (t - 4.0) / 24.0)))
    ramp = np.clip((t - spike_at_h) * 60.0, 0.0, 1.0) * np.clip((spike_at_h + spike_min / 60.0 - t) * 60.0, 0.0, 1.0)
    return curve * (1.0 + (spike_factor - 1.0) * ramp)


def queue_time_s(rate: float, mu: float, backlog: float) -> float:
    """Mean wait of one replica: M/D/1 wait at utilisation ``rate/mu`` (capped) plus the backlog's."""
    rho = min(rate / mu, 0.98)
    return rho / (2.0 * mu * (1.0 - rho)) + backlog / mu


def simulate(
    spec: HpaSpec,
    traffic: np.ndarray,
    mu: float,
    start_delay_s: float,
    initial: int | None = None,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Second-by-second replay; returns arrays of replicas (desired, ready), queue time (ms) and refusals."""
    rng = np.random.default_rng(seed)
    hpa = Autoscaler(spec)
    replicas = min(max(initial or spec.min_replicas, spec.min_replicas), spec.max_replicas)
    ready_at = [0.0] * replicas  # when each pod of the Deployment serves
    backlog = 0.0  # requests queued across ready pods
    window: deque[tuple[float, float]] = deque()  # (requests, requests * queue time) per second
    out = {k: np.zeros(len(traffic)) for k in ("desired", "ready", "queue_ms", "refused", "arrivals")}
    for now, lam in enumerate(traffic):
        arrivals = rng.poisson(lam)
        ready = sum(1 for t in ready_at if t <= now)
        capacity = ready * mu
        # The M/D/1 term already averages over Poisson arrivals: it takes the expected rate, not the sample.
        queue = queue_time_s(lam / ready, mu, backlog / ready) if ready else float("inf")
        backlog = max(0.0, backlog + arrivals - capacity) if ready else backlog + arrivals
        refused = max(0.0, backlog - JOB_QUEUE_SIZE * ready)
        backlog -= refused
        window.append((arrivals, arrivals * min(queue, 60.0)))
        if len(window) > METRIC_WINDOW_S:
            window.popleft()
        if now % SYNC_PERIOD_S == 0 and now > 0:
            with_metrics = sum(1 for t in ready_at if t <= now - METRICS_AFTER_READY_S)
            served = sum(n for n, _ in window)
            metrics = {
                QUEUE_METRIC: 1000.0 * sum(w for _, w in window) / served if served else 0.0,
                RATE_METRIC: served / len(window) / max(ready, 1),
            }
            values = {m: [metrics[m]] * with_metrics for m in spec.targets}
            new = hpa.step(float(now), replicas, values, replicas - with_metrics)
            if new > replicas:
                ready_at += [now + start_delay_s] * (new - replicas)
            elif new < replicas:  # the newest pods go first; preStop drains them
                ready_at = sorted(ready_at)[:new]
            replicas = new
        out["desired"][now], out["ready"][now] = replicas, ready
        out["queue_ms"][now] = 1000.0 * min(queue, 60.0)
        out["refused"][now], out["arrivals"][now] = refused, arrivals
    return out


def summarize(result: dict[str, np.ndarray], mu: float) -> dict:
    arrivals = result["arrivals"].sum()
    return {
        "max_replicas": int(result["desired"].max()),
        "replica_hours": round(float(result["ready"].sum()) / 3600.0, 1),
        "p99_queue_ms": round(float(np.percentile(result["queue_ms"], 99)), 0),
        "max_queue_ms": round(float(result["queue_ms"].max()), 0),
        "refused_fraction": round(float(result["refused"].sum() / arrivals), 5) if arrivals else 0.0,
        "scale_changes": int(np.count_nonzero(np.diff(result["desired"]))),
        "mean_utilisation": round(float(result["arrivals"].sum() / (result["ready"].sum() * mu)), 3),
    }


def plot(result: dict[str, np.ndarray], traffic: np.ndarray, spec: HpaSpec, title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hours = np.arange(len(traffic)) / 3600.0
    fig, (ax1, ax2, ax3) = plt.subplots(3, 1, figsize=(11, 8.5), sharex=True)
    ax1.plot(hours, traffic, color="tab:gray")
    ax1.set_ylabel("traffic (img/s)")
    ax1.set_title(title, fontsize=8)
    ax2.step(hours, result["desired"], where="post", label="desired (HPA)", color="tab:blue", linestyle="--")
    ax2.step(hours, result["ready"], where="post", label="ready (serving)", color="tab:green")
    ax2.axhline(spec.max_replicas, color="tab:red", linestyle=":", label="maxReplicas")
    ax2.set_ylabel("replicas")
    ax2.legend(loc="upper left", fontsize=8)
    per_minute = result["queue_ms"][: len(hours) // 60 * 60].reshape(-1, 60).mean(axis=1)
    ax3.plot(hours[::60][: len(per_minute)], per_minute, color="tab:purple", label="queue time (1-min mean)")
    if QUEUE_METRIC in spec.targets:
        target = spec.targets[QUEUE_METRIC]
        ax3.axhline(target, color="tab:orange", linestyle="--", label=f"HPA queue-time target {target:g} ms")
    ax3.set_yscale("log")
    ax3.set_ylabel("queue time (ms)")
    ax3.set_xlabel("hour of day")
    ax3.set_xticks(range(0, 25, 2))
    ax3.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--replica-img-s", type=float, required=True, help="measured images/s one replica serves (required)")
    p.add_argument("--throughput-source", default="", help="where --replica-img-s comes from, for the plot title")
    p.add_argument("--cold-start-s", type=float, required=True, help="measured archive + load to READY (required)")
    p.add_argument("--pod-start-s", type=float, default=20.0, help="scheduling + image pull (default: %(default)s)")
    p.add_argument("--hpa", default=str(K8S / "base" / "hpa.yaml"), help="HPA manifest (default: %(default)s)")
    p.add_argument("--target-ms", type=float, default=None, help="queue-time target (default: the manifest's)")
    p.add_argument("--target-rps", type=float, default=None, help="requests/s per pod target (default: the manifest's)")
    p.add_argument(
        "--queue-only", action="store_true", help="drop the request-rate metric, to show why it is there (default: off)"
    )
    p.add_argument("--peak-img-s", type=float, default=25.0, help="daily peak traffic (default: %(default)s)")
    p.add_argument("--spike-at-h", type=float, default=11.0, help="spike start, hour of day (default: %(default)s)")
    p.add_argument("--spike-factor", type=float, default=2.0, help="traffic multiplier (default: %(default)s)")
    p.add_argument("--spike-min", type=float, default=20.0, help="spike length in minutes (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="Poisson arrivals seed (default: %(default)s)")
    p.add_argument("--out", default=str(K8S / "capacity.png"), help="PNG to write (default: %(default)s)")
    return p


def main(args: argparse.Namespace) -> dict:
    overrides = {QUEUE_METRIC: args.target_ms, RATE_METRIC: args.target_rps}
    spec = HpaSpec.from_manifest(yaml.safe_load(Path(args.hpa).read_text(encoding="utf-8")), overrides)
    if args.queue_only:
        spec = replace(spec, targets={QUEUE_METRIC: spec.targets[QUEUE_METRIC]})
    traffic = daily_traffic(24 * 3600, args.peak_img_s, args.spike_at_h, args.spike_factor, args.spike_min)
    # The day starts with the replicas midnight's traffic needs (as after the day before).
    initial = math.ceil(traffic[0] / spec.targets.get(RATE_METRIC, args.replica_img_s))
    result = simulate(spec, traffic, args.replica_img_s, args.pod_start_s + args.cold_start_s, initial, args.seed)
    summary = summarize(result, args.replica_img_s)
    source = f" ({args.throughput_source})" if args.throughput_source else ""
    title = (
        f"{args.replica_img_s:g} img/s per replica{source}; new pod serves after {args.pod_start_s:g} s start "
        f"(assumed) + {args.cold_start_s:g} s cold start (measured)\nHPA targets "
        + ", ".join(f"{m} {t:g}" for m, t in spec.targets.items())
        + f", {spec.min_replicas}-{spec.max_replicas} replicas\n"
        f"result: peak {summary['max_replicas']} replicas, {summary['replica_hours']} replica-hours, "
        f"p99 queue {summary['p99_queue_ms']:g} ms, refused {100 * summary['refused_fraction']:.2f} %"
    )
    plot(result, traffic, spec, title, Path(args.out))
    print(json.dumps({"out": args.out, **summary}))
    return summary


if __name__ == "__main__":
    main(get_args_parser().parse_args())
