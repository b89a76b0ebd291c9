"""Kill the model worker under load and account for every request (fault injection).

    python -m loadtests.faults --random-weights tiny_vgg --kills 3        # throwaway server
    python -m loadtests.faults --url http://127.0.0.1:8080 --management http://127.0.0.1:8081

Clients send the image back to back; once some have succeeded the worker process (pid from the
management API) gets SIGKILL. TorchServe's frontend notices and starts a new worker. Every request
ends in exactly one recorded outcome: a valid 200, a 5xx the client sees, or a connection error, so
none is lost silently. Reported per kill: the worker's recovery time (kill -> a new worker READY in
the management API) and the time to the first 200 for a request sent after the kill.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import requests

from deploy.docker.model_ready import describe
from loadtests.harness import add_target_args, default_image, target


@dataclass
class Outcome:
    sent: float  # monotonic seconds
    done: float
    status: int | None  # None: no HTTP response (connection error or client timeout)
    error: str | None

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.error is None


@dataclass
class KillReport:
    killed_pid: int
    new_pid: int | None
    worker_recovery_s: float | None  # kill -> a new worker READY
    first_success_s: float | None  # kill -> first 200 for a request sent after the kill
    attempts: int
    ok: int
    server_errors: int  # 5xx answers (the client was told)
    connection_errors: int  # no answer; the client saw an exception
    unexpected: list[str] = field(default_factory=list)  # 4xx or an invalid 200: must stay empty

    @property
    def lost(self) -> int:
        """Requests with no recorded outcome: every attempt is counted once, so this is 0 by design."""
        return self.attempts - self.ok - self.server_errors - self.connection_errors - len(self.unexpected)


def ready_pids(management_url: str, model: str) -> set[int]:
    """The pids of the model's READY workers; none while the management API does not answer."""
    try:
        versions = describe(management_url, model, timeout=5)
        return {w["pid"] for m in versions for w in m.get("workers", []) if w.get("status") == "READY"}
    except (OSError, ValueError, KeyError):  # urllib's errors are OSErrors
        return set()


class LoadLoop:
    """``clients`` threads posting ``image`` until stopped (or ``max_per_client`` each), recording everything."""

    def __init__(
        self, predict_url: str, image: bytes, clients: int = 4, timeout: float = 30.0, max_per_client: int = 5000
    ) -> None:
        self.predict_url, self.image, self.timeout, self.max_per_client = predict_url, image, timeout, max_per_client
        self.outcomes: list[Outcome] = []
        self.attempts = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]

    def _run(self) -> None:
        session = requests.Session()
        for _ in range(self.max_per_client):
            if self._stop.is_set():
                return
            with self._lock:
                self.attempts += 1
            sent = time.monotonic()
            try:
                r = session.post(
                    self.predict_url, data=self.image, headers={"Content-Type": "image/jpeg"}, timeout=self.timeout
                )
                valid = r.status_code != 200 or "label" in r.json()
                outcome = Outcome(sent, time.monotonic(), r.status_code, None if valid else "200 without a label")
            except (requests.RequestException, ValueError) as e:
                outcome = Outcome(sent, time.monotonic(), None, f"{type(e).__name__}: {e}")
            with self._lock:
                self.outcomes.append(outcome)

    def __enter__(self) -> LoadLoop:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(self.timeout + 5)

    def successes_since(self, t: float) -> int:
        with self._lock:
            return sum(o.ok and o.sent >= t for o in self.outcomes)


def wait_until(predicate, timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


def kill_worker_under_load(
    predict_url: str,
    management_url: str,
    model: str,
    image: bytes,
    clients: int = 4,
    warmup: int = 8,
    after: int = 8,
    recovery_timeout: float = 120.0,
) -> KillReport:
    """One fault: load, SIGKILL the worker once ``warmup`` requests succeeded, wait for ``after`` more."""
    (old_pid,) = ready_pids(management_url, model) or {None}
    if old_pid is None:
        raise RuntimeError(f"model {model} has no READY worker at {management_url}")
    with LoadLoop(predict_url, image, clients) as load:
        if not wait_until(lambda: load.successes_since(0) >= warmup, recovery_timeout):
            raise RuntimeError(f"fewer than {warmup} requests succeeded before the kill")
        killed_at = time.monotonic()
        os.kill(old_pid, signal.SIGKILL)
        recovered = wait_until(lambda: ready_pids(management_url, model) - {old_pid}, recovery_timeout)
        recovery = time.monotonic() - killed_at if recovered else None
        wait_until(lambda: load.successes_since(killed_at) >= after, recovery_timeout)
    outcomes = load.outcomes
    firsts = [o.done - killed_at for o in outcomes if o.ok and o.sent >= killed_at]
    new = ready_pids(management_url, model) - {old_pid}
    return KillReport(
        killed_pid=old_pid,
        new_pid=min(new) if new else None,
        worker_recovery_s=recovery,
        first_success_s=min(firsts) if firsts else None,
        attempts=load.attempts,
        ok=sum(o.ok for o in outcomes),
        server_errors=sum(o.status is not None and o.status >= 500 for o in outcomes),
        connection_errors=sum(o.status is None for o in outcomes),
        unexpected=[
            f"{o.status}: {o.error}"
            for o in outcomes
            if not o.ok and o.status is not None and o.status < 500  # a 4xx, or a 200 without a label
        ],
    )


def seconds(value: float | None) -> str:
    return "never" if value is None else f"{value:.2f} s"


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_target_args(p)
    p.add_argument("--image", default=None, help="JPEG to send (default: first art5 val image, else generated)")
    p.add_argument("--kills", type=int, default=3, help="faults to inject, one after another (default: %(default)s)")
    p.add_argument("--clients", type=int, default=4, help="concurrent clients (default: %(default)s)")
    p.add_argument("--output", default=None, help="write the reports as JSON here (default: print only)")
    return p


def main(args: argparse.Namespace) -> list[KillReport]:
    image = Path(args.image).read_bytes() if args.image else default_image()
    reports = []
    with target(args) as t:
        for i in range(args.kills):
            report = kill_worker_under_load(t.predict_url, t.management_url, t.model, image, args.clients)
            reports.append(report)
            print(
                f"kill {i + 1}: pid {report.killed_pid} -> {report.new_pid}, worker READY after "
                f"{seconds(report.worker_recovery_s)}, first 200 after {seconds(report.first_success_s)}; "
                f"{report.attempts} requests: {report.ok} ok, {report.server_errors} 5xx, "
                f"{report.connection_errors} connection errors, {len(report.unexpected)} unexpected, "
                f"{report.lost} lost"
            )
    if args.output:
        Path(args.output).write_text(json.dumps([asdict(r) for r in reports], indent=2) + "\n", encoding="utf-8")
    return reports


if __name__ == "__main__":
    main(get_args_parser().parse_args())
