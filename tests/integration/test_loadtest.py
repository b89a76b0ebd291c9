"""The Locust load test against a real TorchServe (tiny model): the report's files and the SLO gate."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from deploy import ROOT
from tests.images import ART5_LABELS

REPORT_FILES = (
    "locust_stats.csv",
    "locust_stats_history.csv",
    "locust_failures.csv",
    "report.html",
    "latency.png",
    "throughput.png",
    "slo.json",
    "summary.json",
)
SUMMARY_KEYS = ("requests", "failures", "rps", "p50_ms", "p95_ms", "p99_ms", "slo_passed")


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory) -> Path:
    """A few real-looking images in class folders (the label set comes from the folder names)."""
    from tests.images import pattern

    root = tmp_path_factory.mktemp("images")
    for i, label in enumerate(ART5_LABELS):
        (root / label).mkdir()
        for j in range(4):
            pattern((100 + 20 * i, 80 + 10 * j), seed=4 * i + j).save(root / label / f"{j}.jpg", quality=90)
    return root


def run_loadtest(server, image_dir: Path, out: Path, duration: int, *extra: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "loadtests.loadtest", "--url", server.inference_url, "--model", server.name]
    command += ["--metrics-url", server.metrics_url, "--users", "2", "--duration", str(duration)]
    command += ["--out", str(out), "--image-dir", str(image_dir), *extra]
    env = {"PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin", "HOME": str(out)}
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)


def test_smoke_run_writes_report_and_passes_gate(ts_server, image_dir, tmp_path):
    out = tmp_path / "report"
    proc = run_loadtest(ts_server, image_dir, out, 10, "--shape", "stages", "--slo-p95-ms", "60000")
    assert proc.returncode == 0, (
        f"load test failed (rc {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    )
    missing = [name for name in REPORT_FILES if not (out / name).is_file() or (out / name).stat().st_size == 0]
    assert not missing, f"report files missing or empty: {missing}; have {sorted(p.name for p in out.iterdir())}"
    summary = json.loads((out / "summary.json").read_text())
    absent = [k for k in SUMMARY_KEYS if summary.get(k) is None]
    assert not absent, f"summary.json lacks {absent}: {summary}"
    assert summary["requests"] > 0 and summary["failures"] == 0, f"expected failure-free requests: {summary}"
    assert summary["slo_passed"] is True, f"a lenient gate should pass: {summary['slo']}"
    assert summary["p50_ms"] <= summary["p95_ms"] <= summary["p99_ms"], f"percentiles out of order: {summary}"
    assert summary["server_avg_latency_ms"] is not None, f"no server-side latency: {summary['server']}"
    assert "scrapes" in summary["server"]["server_source"], f"expected the /metrics fallback: {summary['server']}"
    check = summary["latency_cross_check"]
    assert check["consistent"], f"server average latency exceeds the client's: {check}"
    kinds = {row.split(",")[1] for row in (out / "locust_stats.csv").read_text().splitlines()[1:-1]}
    assert any(k.startswith("raw ") for k in kinds) and len(kinds) >= 4, f"stats not grouped by request kind: {kinds}"
