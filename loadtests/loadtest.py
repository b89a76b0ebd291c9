"""Run the Locust load test headless against a running server and write a report people can look at.

    python -m loadtests.loadtest --url http://127.0.0.1:8080 --users 8 --duration 60 --shape stages
    make loadtest URL=http://127.0.0.1:8080 USERS=8 DURATION=2m SHAPE=stages    # seconds, or 30s, 2m, 1h30m

Writes ``loadtests/results/<timestamp>/``: Locust's CSVs (``locust_stats.csv``,
``locust_stats_history.csv``, ``locust_failures.csv``, ``locust_exceptions.csv``), ``report.html``,
``latency.png`` and ``throughput.png`` (from the stats history), ``slo.json`` (the gate's verdict)
and ``summary.json``. The server-side average latency and queue time come from Prometheus when
``--prometheus-url`` (or PROMETHEUS_URL) answers, otherwise from two scrapes of TorchServe's /metrics
taken before and after the run; ``summary.json`` says which. SLO gates are the locustfile's flags
(``--slo-p95-ms`` etc., or SLO_P95_MS/SLO_P99_MS/SLO_ERROR_RATIO); other unknown flags are passed to
Locust too. The exit code is Locust's: non-zero when an SLO is missed.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlsplit

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import requests  # noqa: E402

from deploy import ROOT  # noqa: E402
from handlers import MODEL_NAME  # noqa: E402
from loadtests import metrics  # noqa: E402

LOCUSTFILE = Path(__file__).resolve().with_name("locustfile.py")
RESULTS = ROOT / "loadtests" / "results"
PREFIX = "locust"


def duration_seconds(text: str) -> int:
    """Seconds from ``60`` or from Locust's ``--run-time`` syntax (``30s``, ``2m``, ``1h30m``)."""
    match = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s?)?", text.strip())
    if not match or not any(match.groups()):
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration: give seconds (60) or 30s, 2m, 1h30m")
    hours, minutes, seconds = (int(g or 0) for g in match.groups())
    return hours * 3600 + minutes * 60 + seconds


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--url",
        default=os.environ.get("URL", "http://127.0.0.1:8080"),
        help="inference address, or a prediction URL .../predictions/<model> (default: %(default)s)",
    )
    p.add_argument("--model", default=None, help=f"model name (default: from --url, else {MODEL_NAME})")
    p.add_argument("--users", type=int, default=8, help="peak concurrent users (default: %(default)s)")
    p.add_argument(
        "--duration",
        type=duration_seconds,
        default=60,
        help="run time: seconds, or Locust's syntax such as 30s, 2m, 1h30m (default: %(default)s s)",
    )
    p.add_argument(
        "--shape", choices=("steady", "stages", "spike"), default="steady", help="load shape (default: %(default)s)"
    )
    p.add_argument(
        "--metrics-url", default=None, help="TorchServe /metrics (default: the --url host, port 8082, /metrics)"
    )
    p.add_argument(
        "--prometheus-url",
        default=os.environ.get("PROMETHEUS_URL", ""),
        help="Prometheus scraping the server (default: PROMETHEUS_URL, else none)",
    )
    p.add_argument(
        "--prometheus-wait",
        type=float,
        default=12.0,
        help="seconds to let Prometheus scrape the last counters after the run (default: %(default)s)",
    )
    p.add_argument("--out", default=None, help="output folder (default: loadtests/results/<UTC timestamp>)")
    return p


def default_metrics_url(url: str) -> str:
    return f"{urlsplit(url).scheme}://{urlsplit(url).hostname}:8082/metrics"


def split_url(url: str, model: str | None) -> tuple[str, str]:
    """``http://h:8080/predictions/m`` -> (``http://h:8080``, ``m``); a bare address keeps ``model``."""
    base, _, named = url.rstrip("/").partition("/predictions/")
    return base, model or named.split("/")[0] or MODEL_NAME


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def number(value: str | None) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):  # "N/A" before the first response
        return None


def plot_history(history: list[dict[str, str]], out: Path) -> None:
    """latency.png (percentiles over time) and throughput.png (requests/s, failures/s, users)."""
    rows = [r for r in history if r["Name"] == "Aggregated"]
    if not rows:
        rows = [{"Timestamp": "0"}]
    t0 = float(rows[0]["Timestamp"])
    t = [float(r["Timestamp"]) - t0 for r in rows]

    fig, ax = plt.subplots(figsize=(9, 4.5))
    for column in ("50%", "95%", "99%"):
        ax.plot(t, [number(r.get(column)) for r in rows], label=f"p{column[:-1]}")
    ax.set(
        xlabel="seconds since start",
        ylabel="response time (ms)",
        title="Latency (all requests; percentiles over the previous 10 s)",
    )
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "latency.png", dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(9, 4.5))
    ax.plot(t, [number(r.get("Requests/s")) for r in rows], label="requests/s")
    ax.plot(t, [number(r.get("Failures/s")) for r in rows], label="failures/s", color="tab:red")
    ax.set(xlabel="seconds since start", ylabel="per second", title="Throughput")
    ax.grid(alpha=0.3)
    users = ax.twinx()
    users.plot(t, [number(r.get("User Count")) for r in rows], color="tab:gray", linestyle="--", label="users")
    users.set_ylabel("users")
    lines = ax.get_legend_handles_labels()[0] + users.get_legend_handles_labels()[0]
    ax.legend(lines, [line.get_label() for line in lines], loc="upper left")
    fig.tight_layout()
    fig.savefig(out / "throughput.png", dpi=110)
    plt.close(fig)


def cross_check(client_avg_ms: float | None, server: dict) -> dict:
    """Client-side average vs TorchServe's: the gap is HTTP, client and network overhead."""
    server_ms = server.get("server_avg_latency_ms")
    if client_avg_ms is None or server_ms is None:
        return {"client_avg_ms": client_avg_ms, "server_avg_latency_ms": server_ms, "note": "not enough data"}
    return {
        "client_avg_ms": round(client_avg_ms, 2),
        "server_avg_latency_ms": round(server_ms, 2),
        "client_minus_server_ms": round(client_avg_ms - server_ms, 2),
        "server_over_client": round(server_ms / client_avg_ms, 3) if client_avg_ms else None,
        # The server cannot take longer than the client waited; a small tolerance for rounding.
        "consistent": server_ms <= client_avg_ms * 1.05 + 1.0,
    }


def summarize(out: Path, server: dict, command: list[str], exit_code: int) -> dict:
    aggregated = next((r for r in read_rows(out / f"{PREFIX}_stats.csv") if r["Name"] == "Aggregated"), {})
    verdict = json.loads((out / "slo.json").read_text(encoding="utf-8")) if (out / "slo.json").exists() else {}
    client_avg = number(aggregated.get("Average Response Time"))
    summary = {
        "requests": int(aggregated.get("Request Count", 0)),
        "failures": int(aggregated.get("Failure Count", 0)),
        "rps": number(aggregated.get("Requests/s")),
        # Percentiles of the image requests (the gate's population; the cheap bad-input requests are
        # excluded). Locust's CSV has the same percentiles for all requests and per request kind.
        "p50_ms": verdict.get("image_p50_ms"),
        "p95_ms": verdict.get("image_p95_ms"),
        "p99_ms": verdict.get("image_p99_ms"),
        "slo_passed": bool(verdict.get("slo_passed")) and exit_code == 0,
        "slo": verdict,
        "server_avg_latency_ms": server.get("server_avg_latency_ms"),
        "server_avg_queue_ms": server.get("server_avg_queue_ms"),
        "server": server,
        "latency_cross_check": cross_check(client_avg, server),
        "locust_exit_code": exit_code,
        "command": " ".join(command),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary


def server_window(args: argparse.Namespace, metrics_url: str):
    """A callable returning the server-side averages since now (Prometheus if reachable, else scrapes)."""
    start = time.time()
    if args.prometheus_url and metrics.reachable(args.prometheus_url):

        def finish() -> dict:
            time.sleep(args.prometheus_wait)
            return metrics.from_prometheus(args.prometheus_url, args.model, start)

        return finish
    note = f"Prometheus at {args.prometheus_url} not reachable; " if args.prometheus_url else ""
    try:
        before = metrics.scrape_counters(metrics_url, args.model)
    except requests.RequestException as e:  # report without server figures rather than lose the load test
        reason = f"{note}cannot scrape {metrics_url}: {e}"
        return lambda: {"server_source": reason}

    def finish() -> dict:
        result = metrics.from_scrapes(before, metrics.scrape_counters(metrics_url, args.model))
        return {**result, "server_source": note + result["server_source"]}

    return finish


def main(args: argparse.Namespace, locust_args: list[str]) -> int:
    out = Path(args.out or RESULTS / datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ"))
    out.mkdir(parents=True, exist_ok=True)
    args.url, args.model = split_url(args.url, args.model)
    metrics_url = args.metrics_url or default_metrics_url(args.url)
    command = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--host", args.url]
    command += ["--users", str(args.users), "--run-time", f"{args.duration}s", "--shape", args.shape]
    command += ["--model", args.model, "--csv", str(out / PREFIX), "--csv-full-history"]
    command += ["--html", str(out / "report.html"), "--slo-report", str(out / "slo.json"), "--only-summary"]
    command += locust_args
    finish = server_window(args, metrics_url)
    exit_code = subprocess.run(command, cwd=ROOT, check=False).returncode
    server = finish()
    plot_history(read_rows(out / f"{PREFIX}_stats_history.csv"), out)
    summary = summarize(out, server, command, exit_code)
    keys = ("requests", "failures", "rps", "p50_ms", "p95_ms", "p99_ms", "slo_passed", "server_avg_latency_ms")
    print(json.dumps({k: summary[k] for k in keys}, indent=2))
    print(f"report: {out}")
    return exit_code


if __name__ == "__main__":
    parsed, rest = get_args_parser().parse_known_args()
    sys.exit(main(parsed, rest))
