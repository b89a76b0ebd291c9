"""The pod's preStop drain: requests queued when the pod starts terminating all complete before
TorchServe gets SIGTERM (which drops queued and running requests). Real TorchServe, slow test handler."""

from __future__ import annotations

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from deploy.archive import build_archive
from deploy.docker import model_ready
from tests.conftest import run_server
from tests.images import ART5_LABELS, jpeg

pytestmark = pytest.mark.integration

SLOW_HANDLER = Path(__file__).resolve().parent.parent / "slow_handler.py"
DELAY_S = 1.0
MODEL_CONFIG = f"""\
minWorkers: 1
maxWorkers: 1
batchSize: 1
maxBatchDelay: 10
responseTimeout: 30
startupTimeout: 120
handler:
  delay_s: {DELAY_S}
"""


def post(url: str) -> tuple[object, dict]:
    try:
        r = requests.post(url, data=jpeg(), headers={"Content-Type": "image/jpeg"}, timeout=60)
        return r.status_code, r.json()
    except (requests.RequestException, ValueError) as e:
        return type(e).__name__, {}


def test_drain_then_sigterm_loses_no_queued_request(tiny_checkpoint, tmp_path):
    config = tmp_path / "model-config.yaml"
    config.write_text(MODEL_CONFIG, encoding="utf-8")
    mar = build_archive(tiny_checkpoint, tmp_path / "store", model_config=config, handler=SLOW_HANDLER)
    servers = run_server(mar, tmp_path / "run")
    server = next(servers)
    try:
        with ThreadPoolExecutor(max_workers=4) as pool:
            answers = [pool.submit(post, server.predict_url) for _ in range(4)]
            deadline = time.monotonic() + 10
            while model_ready.pending_requests(server.model_status()) == 0 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert model_ready.pending_requests(server.model_status()) > 0, "requests never queued"
            result = model_ready.drain(server.management_url, server.name, 0.0, DELAY_S + 1.0, 30.0, poll=0.2)
            os.killpg(server.pid, signal.SIGTERM)  # what tini -g does once preStop returns
            results = [a.result() for a in answers]
    finally:
        servers.close()  # stops the server if it is still running
    assert "queue empty" in result, f"drain: {result}"
    statuses = [status for status, _ in results]
    assert statuses == [200] * 4, f"requests lost to SIGTERM after the drain: {statuses}"
    assert all(body.get("label") in ART5_LABELS for _, body in results), f"bodies: {results}"
