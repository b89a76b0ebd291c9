"""A real Prometheus scrapes a real TorchServe (tiny model) and artserve's recording rules return values."""

from __future__ import annotations

import time
from urllib.parse import urlsplit

import pytest
import requests

from deploy.prometheus.local import RULES as RULE_FILE
from deploy.prometheus.local import start_prometheus
from deploy.server import free_port
from loadtests import metrics
from tests.images import encode, pattern

RULES = (
    "model:artserve_requests:rate1m",
    "model:artserve_inference_latency_ms:avg_rate1m",
    "model:artserve_queue_latency_ms:avg_rate1m",
    "model:artserve_batch_size:avg_rate1m",
    "job:artserve_http_responses:rate5m",
)


@pytest.fixture(scope="module")
def prometheus(ts_server, tmp_path_factory):
    target = urlsplit(ts_server.metrics_url).netloc
    prom = start_prometheus(tmp_path_factory.mktemp("prometheus"), [target], free_port(), interval="1s")
    try:
        prom.wait_ready()
        yield prom
    finally:
        prom.stop()


def poll(prom, expr: str, timeout: float = 45.0) -> list[dict]:
    """The query's result once it is non-empty; fails with Prometheus's log after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = metrics.query(prom.url, expr)
        if result:
            return result
        time.sleep(0.5)
    pytest.fail(f"{expr!r} stayed empty for {timeout:.0f} s; prometheus log:\n{prom.log_tail()}")


def send_traffic(server, seconds: float = 4.0) -> None:
    """A few good and bad requests spread over several 1 s scrapes, so rate() sees them increase."""
    image = encode(pattern((96, 80)))
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        good = requests.post(server.predict_url, data=image, headers={"Content-Type": "image/jpeg"}, timeout=30)
        assert good.status_code == 200, f"prediction failed: {good.status_code} {good.text[:200]}"
        bad = requests.post(
            server.predict_url, data=b"not an image", headers={"Content-Type": "image/jpeg"}, timeout=30
        )
        assert bad.status_code == 400, f"bad input not a 400: {bad.status_code} {bad.text[:200]}"
        time.sleep(0.3)


def test_prometheus_scrapes_torchserve_and_rules_have_values(ts_server, prometheus):
    start = time.time()
    up = poll(prometheus, 'up{job="artserve"} == 1')
    assert len(up) == 1, f"expected one artserve target up: {up}"
    send_traffic(ts_server)
    series = poll(prometheus, f'ts_inference_requests_total{{model_name="{ts_server.name}"}}')
    assert float(series[0]["value"][1]) > 0, f"no inference counted: {series}"
    values = {}
    for rule in RULES:
        result = poll(prometheus, f"{rule} > 0")
        values[rule] = float(result[0]["value"][1])
    assert values["model:artserve_batch_size:avg_rate1m"] >= 1, f"a batch holds at least one image: {values}"
    labels = poll(prometheus, "model:artserve_inference_latency_ms:avg_rate1m")[0]["metric"]
    assert labels.get("model_name") == ts_server.name, f"recording rule lost the model label: {labels}"

    # The load test's server-side figures through this Prometheus.
    server = metrics.from_prometheus(prometheus.url, ts_server.name, start)
    assert server["server_avg_latency_ms"] and server["server_avg_latency_ms"] > 0, f"no latency: {server}"
    assert "Prometheus" in server["server_source"], f"wrong source: {server}"


def test_loaded_rules_match_the_checked_in_file(prometheus):
    """Prometheus loaded deploy/prometheus/rules.yml without errors and holds every rule in it."""
    import yaml

    expected = {
        rule.get("record") or rule.get("alert")
        for group in yaml.safe_load(RULE_FILE.read_text())["groups"]
        for rule in group["rules"]
    }
    groups = requests.get(f"{prometheus.url}/api/v1/rules", timeout=10).json()["data"]["groups"]
    loaded = {rule["name"] for group in groups for rule in group["rules"]}
    unhealthy = [r["name"] for g in groups for r in g["rules"] if r.get("health") == "err"]
    assert loaded == expected, f"loaded rules differ: missing {expected - loaded}, extra {loaded - expected}"
    assert not unhealthy, f"rules failing to evaluate: {unhealthy}"
