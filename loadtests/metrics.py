"""Server-side average latency of a time window, from Prometheus or from two /metrics scrapes.

TorchServe exports cumulative counters only: the average latency over a window is
delta(ts_inference_latency_microseconds) / delta(ts_inference_requests_total), likewise for the queue.
"""

from __future__ import annotations

import re
import time
import urllib.parse

import requests

COUNTERS = ("ts_inference_latency_microseconds", "ts_queue_latency_microseconds", "ts_inference_requests_total")
_SAMPLE = re.compile(r"^(?P<name>[A-Za-z_:][\w:]*)(?:\{(?P<labels>[^}]*)\})?\s+(?P<value>\S+)")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse_exposition(text: str) -> list[tuple[str, dict[str, str], float]]:
    """Prometheus text format -> ``[(name, labels, value)]`` (comments skipped)."""
    samples = []
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match and not line.startswith("#"):
            labels = dict(_LABEL.findall(match["labels"] or ""))
            samples.append((match["name"], labels, float(match["value"])))
    return samples


def scrape_counters(
    metrics_url: str, model: str | None = None, timeout: float = 10.0, names: tuple[str, ...] = COUNTERS
) -> dict[str, float]:
    """Counters ``names`` (default: TorchServe's latency and request counters) summed over label sets, 0 when
    absent; only the series of ``model`` (label ``model_name``) when it is given."""
    response = requests.get(metrics_url, timeout=timeout)
    response.raise_for_status()
    totals = dict.fromkeys(names, 0.0)
    for name, labels, value in parse_exposition(response.text):
        if name in totals and (model is None or labels.get("model_name") == model):
            totals[name] += value
    return totals


def averages(requests_: float, latency_us: float, queue_us: float) -> dict:
    if requests_ <= 0:
        return {"server_requests": 0, "server_avg_latency_ms": None, "server_avg_queue_ms": None}
    return {
        "server_requests": round(requests_),
        "server_avg_latency_ms": latency_us / requests_ / 1000,
        "server_avg_queue_ms": queue_us / requests_ / 1000,
    }


def from_scrapes(before: dict[str, float], after: dict[str, float]) -> dict:
    delta = {name: after[name] - before[name] for name in COUNTERS}
    result = averages(
        delta["ts_inference_requests_total"],
        delta["ts_inference_latency_microseconds"],
        delta["ts_queue_latency_microseconds"],
    )
    return {"server_source": "two scrapes of TorchServe /metrics (before and after the run)", **result}


def query(prometheus_url: str, expr: str, timeout: float = 10.0) -> list[dict]:
    """An instant query through Prometheus's HTTP API; returns ``data.result``."""
    url = f"{prometheus_url.rstrip('/')}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    response = requests.get(url, timeout=timeout)
    response.raise_for_status()
    body = response.json()
    if body.get("status") != "success":
        raise RuntimeError(f"Prometheus query {expr!r} failed: {body}")
    return body["data"]["result"]


def query_scalar(prometheus_url: str, expr: str) -> float | None:
    result = query(prometheus_url, expr)
    return float(result[0]["value"][1]) if result else None


def from_prometheus(prometheus_url: str, model: str, start: float, end: float | None = None) -> dict:
    """Averages over ``[start, now]`` from Prometheus (the counters' increase over the window)."""
    window = max(1, round((end or time.time()) - start))
    selector = f'{{model_name="{model}"}}'
    values = {
        name: query_scalar(prometheus_url, f"sum(increase({name}{selector}[{window}s]))") or 0.0 for name in COUNTERS
    }
    result = averages(
        values["ts_inference_requests_total"],
        values["ts_inference_latency_microseconds"],
        values["ts_queue_latency_microseconds"],
    )
    source = (
        f"Prometheus at {prometheus_url}: increase() of the counters over the last {window} s "
        "(server_requests is approximate: increase() extrapolates and misses what a new series counted "
        "before its first scrape; the averages are ratios of the same window)"
    )
    return {"server_source": source, **result}


def reachable(prometheus_url: str) -> bool:
    try:
        return requests.get(f"{prometheus_url.rstrip('/')}/-/ready", timeout=3).status_code == 200
    except requests.RequestException:
        return False
