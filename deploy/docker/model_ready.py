"""Kubernetes startup/readiness probe: exit 0 only when the model has a READY worker.

    python /home/model-server/model_ready.py [--model art-category] [--url http://127.0.0.1:8081]

TorchServe's ``/ping`` answers "Healthy" before the model is registered, so it cannot gate traffic.
This asks the management API (bound to the pod's loopback, hence an exec probe) to describe the
model and passes when at least ``--min-ready`` workers report ``"status": "READY"``. Standard
library only: it runs with the image's Python, and kubelet shows the printed reason in pod events.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request


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


def check(url: str, model: str, min_ready: int, timeout: float) -> tuple[bool, str]:
    """Ask the management API; return (passed, reason)."""
    try:
        with urllib.request.urlopen(f"{url}/models/{model}", timeout=timeout) as response:
            description = json.loads(response.read())
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
    p.add_argument("--model", default="art-category", help="model name (default: %(default)s)")
    p.add_argument("--url", default="http://127.0.0.1:8081", help="management API (default: %(default)s)")
    p.add_argument("--min-ready", type=int, default=1, help="READY workers needed (default: %(default)s)")
    p.add_argument("--timeout", type=float, default=3.0, help="HTTP timeout in seconds (default: %(default)s)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    passed, reason = check(args.url.rstrip("/"), args.model, args.min_ready, args.timeout)
    print(reason)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
