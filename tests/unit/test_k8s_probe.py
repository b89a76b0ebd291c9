"""The readiness probe script (deploy/docker/model_ready.py) against TorchServe's describe-model answers."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from deploy.docker import model_ready
from deploy.server import free_port

# Answers of TorchServe 0.12's GET /models/art-category, captured from a real server (fields trimmed):
# while the worker loads the model its status is "UNLOADING", then "READY".
LOADING = [
    {
        "modelName": "art-category",
        "modelVersion": "tiny_vgg-9d36927cf274",
        "modelUrl": "art-category.mar",
        "runtime": "python",
        "minWorkers": 1,
        "maxWorkers": 1,
        "batchSize": 8,
        "maxBatchDelay": 50,
        "loadedAtStartup": True,
        "workers": [
            {
                "id": "36057",
                "startTime": "2026-11-22T08:08:17.112Z",
                "status": "UNLOADING",
                "memoryUsage": 0,
                "pid": -1,
                "gpu": False,
                "gpuUsage": "N/A",
            }
        ],
        "jobQueueStatus": {"remainingCapacity": 64, "pendingRequests": 0},
    }
]
READY = [{**LOADING[0], "workers": [{**LOADING[0]["workers"][0], "status": "READY", "pid": 14862}]}]


def test_ready_workers_counts_only_ready():
    assert model_ready.ready_workers(READY) == 1, "a READY worker was not counted"
    assert model_ready.ready_workers(LOADING) == 0, "a loading (UNLOADING) worker was counted as ready"
    two_versions = [READY[0], {**READY[0], "modelVersion": "v2"}]
    assert model_ready.ready_workers(two_versions) == 2, "workers of a second version were not counted"
    assert model_ready.ready_workers([{"modelName": "x", "workers": []}]) == 0, "no workers counted as ready"


def test_ready_workers_rejects_other_shapes():
    with pytest.raises(ValueError, match="list"):
        model_ready.ready_workers({"code": 404, "message": "Model not found"})


class FakeManagement(BaseHTTPRequestHandler):
    answers: dict[str, tuple[int, bytes]] = {}

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        status, body = self.answers.get(self.path, (404, b'{"code": 404, "message": "Model not found"}'))
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def management() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), FakeManagement)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    ("answer", "passed", "reason"),
    [
        ((200, json.dumps(READY).encode()), True, "1 READY worker"),
        ((200, json.dumps(LOADING).encode()), False, "0 READY worker"),
        ((200, b"<html>oops</html>"), False, "not JSON"),
        ((200, b'{"workers": []}'), False, "unexpected answer"),
        (None, False, "answered 404"),
    ],
)
def test_check_against_a_management_api(management, answer, passed, reason):
    FakeManagement.answers = {"/models/art-category": answer} if answer else {}
    ok, message = model_ready.check(management, "art-category", 1, 3.0)
    assert ok is passed, f"check passed={ok} ({message}), expected {passed}"
    assert reason in message, f"reason {message!r} does not say {reason!r}"


def test_main_exit_codes(management, capsys):
    FakeManagement.answers = {"/models/art-category": (200, json.dumps(READY).encode())}
    assert model_ready.main(["--url", management]) == 0, capsys.readouterr().out
    assert model_ready.main(["--url", management, "--min-ready", "2"]) == 1, "2 READY workers demanded, 1 present"
    closed = f"http://127.0.0.1:{free_port()}"
    assert model_ready.main(["--url", closed, "--timeout", "1"]) == 1, "an unreachable server passed"
    assert "not reachable" in capsys.readouterr().out, "the unreachable reason is not printed"


def queued(n: int) -> bytes:
    return json.dumps([{**READY[0], "jobQueueStatus": {"remainingCapacity": 64 - n, "pendingRequests": n}}]).encode()


def test_pending_requests_reads_the_job_queue():
    assert model_ready.pending_requests(json.loads(queued(3))) == 3, "pendingRequests not read"
    assert model_ready.pending_requests([{"modelName": "x"}]) == 0, "a version without queue status is not empty"


class FakeClock:
    """time.monotonic/time.sleep stand-ins: sleeping advances the clock, and is recorded."""

    def __init__(self) -> None:
        self.now, self.sleeps = 0.0, []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_drain_waits_for_the_queue_then_the_last_batch(management, monkeypatch):
    monkeypatch.setattr(FakeManagement, "do_GET", _sequence_handler(iter([queued(3), queued(1), queued(0)])))
    fake = FakeClock()
    result = model_ready.drain(management, "art-category", 5.0, 4.0, 75.0, poll=0.5, clock=fake.clock, sleep=fake.sleep)
    assert "queue empty" in result, result
    assert fake.sleeps == [5.0, 0.5, 0.5, 4.0], f"settle, two polls, last batch expected; slept {fake.sleeps}"


def test_drain_gives_up_at_max_wait(management, monkeypatch):
    monkeypatch.setattr(FakeManagement, "do_GET", _sequence_handler(iter([queued(5)] * 1000)))
    fake = FakeClock()
    result = model_ready.drain(management, "art-category", 5.0, 4.0, 20.0, poll=0.5, clock=fake.clock, sleep=fake.sleep)
    assert "gave up after 20 s" in result, result
    assert fake.now <= 20.5, f"drain waited {fake.now} s, past its 20 s bound"


def test_drain_ends_when_the_server_is_gone():
    closed = f"http://127.0.0.1:{free_port()}"
    fake = FakeClock()
    result = model_ready.drain(closed, "art-category", 1.0, 4.0, 20.0, clock=fake.clock, sleep=fake.sleep)
    assert "unavailable" in result and fake.now == 1.0, f"{result} after {fake.now} s"


def _sequence_handler(answers):
    def do_get(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(next(answers))

    return do_get
