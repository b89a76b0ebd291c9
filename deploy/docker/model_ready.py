"""Kubernetes probes for TorchServe: READY check (startup/readiness) and queue drain (preStop).

    python /home/model-server/model_ready.py [--model art-category] [--url http://127.0.0.1:8081]
    python /home/model-server/model_ready.py --drain [--settle 5] [--last-batch 5] [--max-wait 75]

TorchServe's ``/ping`` answers "Healthy" before the model is registered, so it cannot gate traffic.
This asks the management API (bound to the pod's loopback, hence exec probes) to describe the
model and passes when at least ``--min-ready`` workers report ``"status": "READY"``.

``--drain`` (preStop): TorchServe drops queued and running requests on SIGTERM, so before it gets
one, wait ``--settle`` s for the Service endpoints to stop sending, then until the model's queue
(``jobQueueStatus.pendingRequests``) is empty, then ``--last-batch`` s for the batch being run;
never longer than ``--max-wait`` s in all. Standard library only: it runs with the image's Python,
and kubelet shows the printed reason in pod events.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable


def ready_workers(description: object) -> int:
    """Workers with status READY in a ``GET /models/<name>`` answer: ``[{"modelName": ..., "workers": [...]}]``."""
    if not isinstance(description, list):
        raise ValueError(f"expected a list of model versions, got {type(description).__name__}")
    return sum(
        1
        for version in description
        if isinstance(version, dict)
        for worker in version.get("workers") or []
        if isinstance(worker, dict) and worker.get("status") == "READY"
    )


def pending_requests(description: object) -> int:
    """Requests waiting in the model's queue (not those a worker is running) in a describe answer."""
    if not isinstance(description, list):
        raise ValueError(f"expected a list of model versions, got {type(description).__name__}")
    return sum(
        int((v.get("jobQueueStatus") or {}).get("pendingRequests", 0)) for v in description if isinstance(v, dict)
    )


def describe(url: str, model: str, timeout: float) -> object:
    with urllib.request.urlopen(f"{url}/models/{model}", timeout=timeout) as response:
        return json.loads(response.read())


def drain(
    url: str,
    model: str,
    settle: float,
    last_batch: float,
    max_wait: float,
    poll: float = 0.5,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> str:
    """Wait until the queue is empty (bounded by ``max_wait``); return what happened."""
    deadline = clock() + max_wait
    sleep(min(settle, max_wait))
    while clock() < deadline:
        try:
            pending = pending_requests(describe(url, model, timeout=min(3.0, poll * 4)))
        except (urllib.error.URLError, OSError, ValueError) as e:
            return f"management API unavailable ({e}); nothing left to drain"
        if pending == 0:
            sleep(max(0.0, min(last_batch, deadline - clock())))
            return "queue empty; last batch given time to finish"
        sleep(poll)
    return f"gave up after {max_wait:g} s with requests still queued"


def check(url: str, model: str, min_ready: int, timeout: float) -> tuple[bool, str]:
    """Ask the management API; return (passed, reason)."""
    try:
        description = describe(url, model, timeout)
    except urllib.error.HTTPError as e:
        return False, f"management API answered {e.code} for model {model} (not registered yet?)"
    except (urllib.error.URLError, OSError) as e:
        return False, f"management API at {url} not reachable: {e}"
    except ValueError as e:
        return False, f"management API answered something that is not JSON: {e}"
    try:
        ready = ready_workers(description)
    except ValueError as e:
        return False, f"unexpected answer for model {model}: {e}"
    if ready < min_ready:
        return False, f"model {model} has {ready} READY worker(s); need {min_ready}"
    return True, f"model {model} has {ready} READY worker(s)"


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # A literal, not handlers.MODEL_NAME: this probe runs alone in the image (python -I, standard library only).
    p.add_argument("--model", default="art-category", help="model name (default: %(default)s)")
    p.add_argument("--url", default="http://127.0.0.1:8081", help="management API (default: %(default)s)")
    p.add_argument("--min-ready", type=int, default=1, help="READY workers needed (default: %(default)s)")
    p.add_argument("--timeout", type=float, default=3.0, help="HTTP timeout in seconds (default: %(default)s)")
    p.add_argument("--drain", action="store_true", help="preStop: wait for the queue to empty (default: off)")
    p.add_argument("--settle", type=float, default=5.0, help="drain: s for endpoints to drop (default: %(default)s)")
    p.add_argument(
        "--last-batch", type=float, default=5.0, help="drain: s for the running batch (default: %(default)s)"
    )
    p.add_argument("--max-wait", type=float, default=75.0, help="drain: s at most in all (default: %(default)s)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    if args.drain:
        print(drain(args.url.rstrip("/"), args.model, args.settle, args.last_batch, args.max_wait))
        return 0
    passed, reason = check(args.url.rstrip("/"), args.model, args.min_ready, args.timeout)
    print(reason)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
