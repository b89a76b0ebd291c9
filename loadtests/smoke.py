"""Post-deploy smoke check: a concurrent burst with a few corrupt images, against a running server.

    python -m loadtests.smoke                       # make serve's endpoint; 32 requests, 2 of them corrupt
    python -m loadtests.smoke --url http://host:8080/predictions/art-category --metrics http://host:8082/metrics

Sends ``--requests`` images at once (real JPEGs from ``--images``, default ../shared/data/art5/val, with
``--corrupt`` of them replaced by a truncated JPEG) and checks that every valid image gets a 200 prediction
with a label and probabilities, every corrupt one a 4xx JSON error, and, from the server's own metrics
(``ArtserveImages`` / ``ArtserveBatches`` before and after), how many batches the handler ran. Prints a JSON
summary; the exit code is 1 when any answer is wrong. Batching is reported, not required: a server with
``batchSize: 1`` is not broken.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from handlers import MODEL_NAME
from loadtests.metrics import scrape_counters
from loadtests.validation import check_prediction
from training import DATA_DIR

HANDLER_COUNTERS = ("ArtserveImages", "ArtserveBatches")


def check_answer(status: int, body: object, corrupt: bool) -> str | None:
    """Why an answer is wrong, or None when it is right."""
    if not isinstance(body, dict):
        return f"{status}: body is not a JSON object"
    if corrupt:
        if not 400 <= status < 500 or body.get("code") != status or not body.get("error"):
            return f"corrupt image answered {status} {body}"
        return None
    if status != 200:
        return f"valid image answered {status} {body}"
    problem = check_prediction(body)
    return f"valid image answered 200, but {problem}: {body}" if problem else None


def burst(url: str, metrics_url: str | None, payloads: list[bytes], corrupt: set[int], timeout: float = 120) -> dict:
    """Post every payload at the same moment; one record per request, plus the handler's batch counts."""
    before = scrape_counters(metrics_url, names=HANDLER_COUNTERS) if metrics_url else None
    gate = threading.Barrier(len(payloads))

    def post(data: bytes) -> tuple[int, object]:
        gate.wait()
        try:
            r = requests.post(url, data=data, headers={"Content-Type": "image/jpeg"}, timeout=timeout)
        except requests.RequestException as e:
            return 0, f"{type(e).__name__}: {e}"
        try:
            return r.status_code, r.json()
        except ValueError:
            return r.status_code, r.text[:200]

    with ThreadPoolExecutor(max_workers=len(payloads)) as pool:
        answers = list(pool.map(post, payloads))
    problems = [
        f"request {i}: {why}"
        for i, (status, body) in enumerate(answers)
        if (why := check_answer(status, body, i in corrupt))
    ]
    summary = {
        "requests": len(payloads),
        "corrupt": sorted(corrupt),
        "statuses": [status for status, _ in answers],
        "ok_200": sum(status == 200 for status, _ in answers),
        "client_errors_4xx": sum(400 <= status < 500 for status, _ in answers),
        "other": sum(status != 200 and not 400 <= status < 500 for status, _ in answers),
        "problems": problems,
        "passed": not problems,
    }
    if before is not None:
        after = scrape_counters(metrics_url, names=HANDLER_COUNTERS)
        images = after["ArtserveImages"] - before["ArtserveImages"]
        batches = after["ArtserveBatches"] - before["ArtserveBatches"]
        summary.update(handler_images=images, handler_batches=batches, mean_batch=images / batches if batches else None)
    summary["answers"] = answers
    return summary


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--url",
        default=f"http://127.0.0.1:8080/predictions/{MODEL_NAME}",
        help="prediction URL (default: %(default)s)",
    )
    p.add_argument(
        "--metrics",
        default="http://127.0.0.1:8082/metrics",
        help="the server's Prometheus metrics URL, '' to skip the batch count (default: %(default)s)",
    )
    p.add_argument(
        "--images", default=str(DATA_DIR / "val"), help="folder of JPEGs, searched recursively (default: %(default)s)"
    )
    p.add_argument("--requests", type=int, default=32, help="concurrent requests (default: %(default)s)")
    p.add_argument("--corrupt", type=int, default=2, help="how many of them are corrupt (default: %(default)s)")
    return p


def main(args: argparse.Namespace) -> dict:
    if not 0 <= args.corrupt <= args.requests:
        raise SystemExit(f"--corrupt is {args.corrupt}; it must be between 0 and --requests ({args.requests})")
    images = sorted(Path(args.images).rglob("*.jpg"))
    if not images:
        raise SystemExit(f"no .jpg files under {args.images}: pass --images")
    payloads = [images[i % len(images)].read_bytes() for i in range(args.requests)]
    # spread the corrupt ones through the burst so they share batches with valid images
    corrupt = {int((k + 0.5) * args.requests / args.corrupt) for k in range(args.corrupt)} if args.corrupt else set()
    for i in corrupt:
        payloads[i] = payloads[i][: len(payloads[i]) // 3]
    summary = burst(args.url, args.metrics or None, payloads, corrupt)
    print(json.dumps({k: v for k, v in summary.items() if k != "answers"}, indent=2))
    return summary


if __name__ == "__main__":
    sys.exit(0 if main(get_args_parser().parse_args())["passed"] else 1)
