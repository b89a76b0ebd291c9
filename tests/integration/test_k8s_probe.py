"""The pod's readiness probe passes against a real TorchServe serving the model (the session server)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from deploy.docker import model_ready

pytestmark = pytest.mark.integration


def test_probe_passes_for_a_ready_server(ts_server):
    passed, reason = model_ready.check(ts_server.management_url, ts_server.name, 1, 5.0)
    assert passed, f"probe failed against a READY server: {reason}"


def test_probe_script_runs_standalone_like_in_the_pod(ts_server):
    """Run as the kubelet does: the file alone, by path, with the standard library only."""
    script = model_ready.__file__
    ok = subprocess.run(
        [sys.executable, "-I", script, "--url", ts_server.management_url, "--model", ts_server.name],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert ok.returncode == 0, f"exit {ok.returncode}: {ok.stdout}{ok.stderr}"
    missing = subprocess.run(
        [sys.executable, "-I", script, "--url", ts_server.management_url, "--model", "no-such-model"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert missing.returncode == 1, f"an unknown model passed: {missing.stdout}"
    assert "404" in missing.stdout, f"reason does not name the 404: {missing.stdout}"
