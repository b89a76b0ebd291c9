"""Faults and overload against real TorchServe servers: a killed worker, a stuck inference, a full
queue and a restart. Each server here is small and bounded; every one is stopped even on failure."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from deploy.archive import build_archive
from deploy.server import Server, read_properties, start_server
from loadtests import overload, soak
from loadtests.faults import kill_worker_under_load, ready_pids, wait_until
from tests.conftest import run_server
from tests.hostile import worker_identities
from tests.images import ART5_LABELS, jpeg

pytestmark = pytest.mark.integration

SLOW_HANDLER = Path(__file__).resolve().parent.parent / "slow_handler.py"
DELAY_S = 1.0  # every batch of the slow handler takes this long
RESPONSE_TIMEOUT_S = 3  # TorchServe's per-model responseTimeout (whole seconds)
QUEUE = 4  # job_queue_size of the slow server
BATCH = 2

SLOW_MODEL_CONFIG = f"""\
minWorkers: 1
maxWorkers: 1
batchSize: {BATCH}
maxBatchDelay: 20
responseTimeout: {RESPONSE_TIMEOUT_S}
startupTimeout: 120
handler:
  delay_s: {DELAY_S}
  stall_s: 30
"""


def post(url: str, headers: dict | None = None, timeout: float = 60) -> tuple[int, dict, float]:
    start = time.monotonic()
    r = requests.post(url, data=jpeg(), headers={"Content-Type": "image/jpeg", **(headers or {})}, timeout=timeout)
    try:
        body = r.json()
    except ValueError:
        body = {"raw": r.text[:200]}
    return r.status_code, body, time.monotonic() - start


@pytest.fixture(scope="module")
def slow_server(tiny_checkpoint, tmp_path_factory) -> Server:
    """The tiny model behind a handler that takes DELAY_S per batch, with a queue of QUEUE requests."""
    tmp = tmp_path_factory.mktemp("slow")
    config = tmp / "model-config.yaml"
    config.write_text(SLOW_MODEL_CONFIG, encoding="utf-8")
    mar = build_archive(tiny_checkpoint, tmp / "store", model_config=config, handler=SLOW_HANDLER)
    yield from run_server(mar, tmp / "run", overrides={"job_queue_size": str(QUEUE)})


def test_full_queue_sheds_with_503_before_any_inference_finishes(slow_server):
    """30 simultaneous requests against a queue of 4: the excess is refused with 503 at once, while the
    accepted ones wait for the slow handler (each batch takes DELAY_S) and all get 200."""
    n = 30
    with ThreadPoolExecutor(max_workers=n) as pool:
        answers = list(pool.map(lambda _: post(slow_server.predict_url), range(n)))
    statuses = sorted(status for status, _, _ in answers)
    shed = [a for a in answers if a[0] == 503]
    accepted = [a for a in answers if a[0] == 200]
    assert len(shed) + len(accepted) == n, f"statuses other than 200/503 under overload: {statuses}"
    assert shed, f"no request was shed with a queue of {QUEUE}: {statuses}"
    assert len(accepted) >= QUEUE, f"fewer than the queue size ({QUEUE}) were accepted: {statuses}"
    assert all(b.get("type") == "ServiceUnavailableException" for _, b, _ in shed), f"503 bodies: {shed[:2]}"
    assert all(b.get("label") in ART5_LABELS for _, b, _ in accepted), "an accepted request has no prediction"
    slowest_shed = max(s for _, _, s in shed)
    fastest_accepted = min(s for _, _, s in accepted)
    assert slowest_shed < fastest_accepted, (
        f"a 503 took {slowest_shed:.2f} s, longer than the fastest accepted request ({fastest_accepted:.2f} s, "
        f"which includes a {DELAY_S} s handler delay): the queue did not shed at once"
    )


def target_args(server: Server, *extra: str) -> list[str]:
    return ["--url", server.inference_url, "--management", server.management_url, "--model", server.name, *extra]


def test_overload_command_reports_shedding(slow_server, tmp_path):
    """`make overload` at toy scale: 3x the slow server's capacity for 3 s."""
    args = overload.get_args_parser().parse_args(
        target_args(slow_server, "--capacity-seconds", "3", "--duration", "3", "--clients", "4")
        + ["--timeout", "60", "--output-dir", str(tmp_path)]
    )
    summary = overload.main(args)
    assert summary["queue_limit"] == QUEUE, f"queue limit reported as {summary['queue_limit']}, configured {QUEUE}"
    assert summary["shed_503"] > 0 and summary["accepted"] > 0, f"expected both 503s and 200s: {summary}"
    assert summary["other"] == {}, f"answers other than 200/503 under overload: {summary['other']}"
    assert summary["requests"] == summary["accepted"] + summary["shed_503"], f"requests unaccounted: {summary}"
    for name in ("requests.csv", "summary.json", "overload.png"):
        assert (tmp_path / name).stat().st_size > 0, f"overload wrote no {name}"


def test_soak_command_samples_frontend_and_worker_memory(slow_server, tmp_path):
    """`make soak` at toy scale: 4 s of load, RSS sampled every second."""
    args = soak.get_args_parser().parse_args(
        target_args(slow_server, "--duration", "4", "--interval", "1", "--warmup", "0", "--window", "2")
        + ["--clients", "2", "--output-dir", str(tmp_path)]
    )
    summary = soak.main(args)
    assert summary["requests_ok"] > 0 and summary["requests_failed"] == 0, f"soak load failed: {summary}"
    assert summary["requests_unaccounted"] == 0, f"requests without an outcome: {summary}"
    for proc in ("frontend", "workers"):
        assert (summary[proc]["first_mb"] or 0) > 50, f"{proc} RSS not sampled: {summary[proc]}"
    for name in ("rss.csv", "summary.json", "rss.png"):
        assert (tmp_path / name).stat().st_size > 0, f"soak wrote no {name}"


def test_stuck_inference_hits_the_response_timeout(slow_server):
    """A batch stalled for 30 s is cut off at responseTimeout: the client gets a 5xx, not a hang, the
    frontend replaces the worker, and the next request succeeds."""
    before = worker_identities(slow_server)
    status, body, _ = post(slow_server.predict_url, headers={"X-Artserve-Stall": "1"}, timeout=60)
    assert status == 500 and body.get("message") == "Worker died.", (
        f"a stalled inference answered {status} {body}; expected TorchServe's timeout error"
    )
    status, body, _ = post(slow_server.predict_url, timeout=120)
    assert status == 200 and body.get("label") in ART5_LABELS, f"request after the timeout: {status} {body}"
    after = worker_identities(slow_server)
    assert after and after.isdisjoint(before), f"the stalled worker was not replaced: {before} -> {after}"


def test_killed_worker_is_replaced_and_no_request_is_lost(slow_server):
    """SIGKILL the worker under 4 clients of load: requests in flight fail with a 5xx or a connection
    error the client sees, a new worker comes up, and later requests succeed."""
    report = kill_worker_under_load(
        slow_server.predict_url, slow_server.management_url, slow_server.name, jpeg(), clients=4, warmup=4, after=4
    )
    print(f"\nkill-worker report: {report}")
    assert report.worker_recovery_s is not None, f"no new worker became READY: {report}"
    assert report.new_pid != report.killed_pid, f"the killed worker's pid is still listed: {report}"
    assert not report.unexpected, f"requests answered with neither a prediction nor a 5xx: {report.unexpected}"
    assert report.lost == 0, f"{report.lost} requests have no recorded outcome: {report}"
    assert report.first_success_s is not None, f"no request sent after the kill succeeded: {report}"
    assert wait_until(lambda: ready_pids(slow_server.management_url, slow_server.name), 30), "no READY worker at end"


def test_restart_keeps_configuration(slow_server, tiny_checkpoint):
    """Stop and start with the same run folder: same rendered config, same model settings, new worker."""
    config_path = slow_server.run_dir / "config.properties"
    config_before = read_properties(config_path)
    model_before = {k: v for k, v in slow_server.model_status()[0].items() if k not in ("workers", "jobQueueStatus")}
    workers_before = worker_identities(slow_server)
    mar = Path(config_before["model_store"]) / config_before["load_models"]
    slow_server.stop()
    restarted = start_server(
        mar, slow_server.run_dir, slow_server.ports, bind="127.0.0.1", overrides={"job_queue_size": str(QUEUE)}
    )
    try:
        restarted.wait_ready(180)
        assert read_properties(config_path) == config_before, "the rendered config.properties changed on restart"
        model_after = {k: v for k, v in restarted.model_status()[0].items() if k not in ("workers", "jobQueueStatus")}
        assert model_after == model_before, f"model settings changed on restart: {model_before} -> {model_after}"
        assert worker_identities(restarted).isdisjoint(workers_before), "the worker was not restarted"
        status, body, _ = post(restarted.predict_url)
        assert status == 200 and body.get("label") in ART5_LABELS, f"after restart: {status} {body}"
    finally:
        restarted.stop()
