"""Evaluate a running server on any ImageFolder directory (``DATA_DIR/<class>/<image>``).

    python -m tagging.evaluate DATA_DIR --url http://127.0.0.1:8080/predictions/art-category --json out.json

Every file is sent as a real concurrent HTTP request (``tagging.client``); the report (scikit-learn's
classification report, the confusion matrix and its PNG, the throughput) is ``training.evaluate``'s, so
a checkpoint evaluated in-process and the server that serves it can be compared line by line. Images
that cannot be classified (unreadable files, 4xx answers) are counted, listed and left out of the
metrics, never dropped silently.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from handlers.labels import read_label_map
from handlers.model import load_checkpoint
from tagging.client import Client
from training import exit_on_bad_input
from training.data import FolderScan
from training.evaluate import add_report_args, report, scan_data


def evaluate_url(
    scan: FolderScan, url: str, concurrency: int, timeout: float, fixed_labels: bool
) -> tuple[list[int], list[int], list[tuple[str, str]]]:
    """Send every image to ``url`` concurrently; (y_true, y_pred, failures as (path, error)).

    A predicted label outside ``scan.classes`` is appended to it (a class the folder lacks), unless
    ``fixed_labels`` says ``scan.classes`` is the model's full label set: then the answer is a failure.
    """
    target_of = dict(scan.samples)
    y_true, y_pred, failures = [], [], []
    for done, result in enumerate(
        Client(url, timeout=timeout).classify_many([p for p, _ in scan.samples], concurrency)
    ):
        label = (result.body or {}).get("label") if result.ok else None
        if not result.ok:
            failures.append((result.path, result.error or f"HTTP {result.status}"))
        elif label not in scan.classes and fixed_labels:
            failures.append((result.path, f"the server answered label {label!r}, not one of {scan.classes}"))
        else:
            if label not in scan.classes:
                scan.classes.append(label)
            y_true.append(target_of[result.path])
            y_pred.append(scan.classes.index(label))
        if (done + 1) % 200 == 0:
            print(f"  {done + 1}/{len(scan.samples)} answered", file=sys.stderr, flush=True)
    return y_true, y_pred, failures


def labels_from(path: str | Path) -> list[str]:
    """The label list of a checkpoint (.pt), a model card (.card.json) or an index_to_name.json."""
    path = Path(path)
    if path.suffix == ".pt":
        return list(load_checkpoint(path)["labels"])
    doc = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(doc.get("labels"), list):
        return list(doc["labels"])
    return read_label_map(path)


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_report_args(p)
    p.add_argument("--url", required=True, help="prediction endpoint to send the images to (required)")
    p.add_argument(
        "--labels-from",
        default=None,
        help="checkpoint, model card or index_to_name.json giving the model's labels, so that a class "
        "folder the model does not know is an error (default: the class folder names)",
    )
    p.add_argument("--concurrency", type=int, default=8, help="requests in flight (default: 8)")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per request (default: 60)")
    return p


def run(args: argparse.Namespace) -> dict:
    """Evaluate as ``args`` say; return the metrics dict (also written to ``--json``)."""
    labels = labels_from(args.labels_from) if args.labels_from else None
    scan = scan_data(args.data_dir, labels)
    start = time.perf_counter()
    predictions = evaluate_url(scan, args.url, args.concurrency, args.timeout, bool(labels))
    source = {"url": args.url, "concurrency": args.concurrency}
    return report(args, scan, predictions, time.perf_counter() - start, source)


main = exit_on_bad_input(run)


if __name__ == "__main__":
    main(get_args_parser().parse_args())
