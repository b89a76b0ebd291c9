"""The GPU benchmark's dry run (tiny model, CPU, local Java): the script runs end to end, so its first GPU run is
not its first run. Checks summary.json's figures and that both handlers (artserve's and TorchServe's stock
image_classifier) answered correctly on the same weights."""

from __future__ import annotations

import json
import subprocess

import pytest

from deploy import ROOT

pytestmark = pytest.mark.integration


def test_bench_gpu_dry_run(tmp_path):
    done = subprocess.run(
        ["bash", str(ROOT / "loadtests" / "bench_gpu.sh"), "--dry-run", "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, (
        f"bench_gpu.sh --dry-run failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    )
    summary = json.loads((tmp_path / "summary.json").read_text())
    for key in ("ceiling", "serve_config", "artserve", "stock", "ratios", "targets", "targets_met", "machine"):
        assert key in summary, f"summary.json lacks {key}: {sorted(summary)}"
    assert summary["dry_run"] is True and summary["device"] == "cpu", f"not a CPU dry run: {summary['device']}"
    assert summary["ceiling"]["best"]["img_s"] > 0, f"no ceiling measured: {summary['ceiling']}"
    for name in ("artserve", "stock"):
        served = summary[name]
        assert served["answers"]["ok"], f"{name} answered wrongly: {served['answers']['problems']}"
        levels = [level["concurrency"] for level in served["levels"]]
        assert levels == [1, 4], f"{name}: expected levels 1 and 4, got {levels}"
        for level in served["levels"]:
            assert level["errors"] == 0 and level["requests"] > 0, f"{name} at {level['concurrency']}: {level}"
            assert level["p50_ms"] <= level["p95_ms"] <= level["p99_ms"], f"{name}: percentiles out of order {level}"
        assert served["peak_img_s"] == max(r["img_s"] for r in served["levels"]), f"{name}: wrong peak {served}"
    ratios = summary["ratios"]
    expected = summary["artserve"]["peak_img_s"] / summary["ceiling"]["best"]["img_s"]
    assert ratios["e2e_over_ceiling"] == pytest.approx(expected), f"e2e_over_ceiling {ratios} vs {expected}"
    expected = summary["artserve"]["peak_img_s"] / summary["stock"]["peak_img_s"]
    assert ratios["artserve_over_stock"] == pytest.approx(expected), f"artserve_over_stock {ratios} vs {expected}"
    assert ratios["p99_ms_at_80pct_of_peak"] == summary["artserve"]["p99_ms_at_80pct"], f"p99 ratio: {ratios}"
