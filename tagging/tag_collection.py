"""Tag a whole collection through the prediction endpoint, resumably, and write a review report.

    python -m tagging.tag_collection ../shared/data/art5/val --out runs/tag/val
    python -m tagging.tag_collection paths.csv --url http://127.0.0.1:8080/predictions/art-category --out runs/tag/x

The input is a folder (searched recursively for image files) or a CSV with a ``path`` column (relative paths are
taken from the CSV's folder) and an optional ``true_label`` column. Each answer is appended to ``OUT/tags.jsonl``
and flushed as it arrives, so a crash loses nothing; at the end ``OUT/tags.csv`` and the review report
``OUT/report.html`` (with ``OUT/confidence.png``) are written for the images of this input, and ``OUT/labels.json``
(the model's labels, which the report offers and ``tagging.apply`` checks corrections against).

``--explain-review`` then asks the explanations endpoint for the Grad-CAM map of every image flagged for review
that has none from its model version yet; each map is appended to ``tags.jsonl`` with its record (``explanation``)
and laid over the image's thumbnail in the report.

Rerunning with the same ``--out`` skips the images already tagged by the model version the server serves now
(one already-tagged image is sent first to learn that version); failed images and images tagged by another
version are sent again. Per-image failures are recorded with their status and error and never stop the run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import yaml

from handlers import MODEL_NAME
from tagging.collection import Collection, load_collection, model_labels, true_labels
from tagging.records import is_tagged, read_records, write_csv
from tagging.review_policy import ReviewRule, policy_html, resolve_rule, risk_coverage_png
from tagging.review_policy import summary as review_summary
from tagging.review_report import write_report
from tagging.tagger import explain_review, tag
from training import exit_on_bad_input

DEFAULT_URL = f"http://127.0.0.1:8080/predictions/{MODEL_NAME}"


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", help="folder of images (recursive) or CSV with a 'path' column (required)")
    p.add_argument("--url", default=DEFAULT_URL, help="prediction endpoint (default: %(default)s)")
    p.add_argument("--out", required=True, help="output folder for tags.jsonl, tags.csv, report.html (required)")
    p.add_argument(
        "--review-below",
        type=float,
        default=None,
        help="mark predictions with probability below this for human review (default: the model's review policy, "
        "as its answers state it; 0.5 for a model without one)",
    )
    p.add_argument(
        "--max-error",
        type=float,
        default=None,
        help="flag by the threshold whose bound in the model card keeps accepted tags wrong at most this share of "
        "the time, instead of the policy's rate (default: the policy's; needs --card)",
    )
    p.add_argument(
        "--card",
        default=f"model_store/{MODEL_NAME}.card.json",
        help="model card whose review policy the report quotes, when it describes the answering version "
        "(default: %(default)s)",
    )
    p.add_argument("--concurrency", type=int, default=8, help="requests in flight (default: %(default)s)")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per request (default: %(default)s)")
    p.add_argument(
        "--retries", type=int, default=3, help="retries of 429/502/503/504 and lost connections (default: %(default)s)"
    )
    p.add_argument("--backoff", type=float, default=0.5, help="first retry delay in seconds (default: %(default)s)")
    p.add_argument(
        "--labels-from",
        default=None,
        help="checkpoint, model card or index_to_name.json with the model's labels, used to recognise parent "
        "folders named after a label as true labels (default: the labels seen in the answers' top-k)",
    )
    p.add_argument(
        "--explain-review",
        action="store_true",
        help="ask the explanations endpoint for the Grad-CAM maps of the images flagged for review, store them in "
        "tags.jsonl and overlay them in the report (default: off)",
    )
    p.add_argument(
        "--explain-url",
        default=None,
        help="explanations endpoint for --explain-review (default: --url with /predictions/ -> /explanations/)",
    )
    p.add_argument("--no-report", action="store_true", help="skip the HTML review report (default: write it)")
    p.add_argument(
        "--report-only",
        action="store_true",
        help="send nothing: rewrite tags.csv and the report from tags.jsonl, e.g. with another --review-below "
        "(default: off)",
    )
    return p


def output_records(records: list[dict], collection: Collection, rule: ReviewRule, labels: list[str]) -> list[dict]:
    """Copies of ``records`` for the CSV and report: ``review`` under this run's rule, ``true_label``."""
    truth = true_labels(collection, labels)
    out = []
    for record in records:
        record = dict(record, review=rule.needs_review(record))
        if record["path"] in truth:
            record["true_label"] = truth[record["path"]]
        out.append(record)
    return out


def run(args: argparse.Namespace) -> dict:
    """Tag as ``args`` say; return the run's summary (also printed as one line)."""
    if args.review_below is not None and not 0.0 <= args.review_below <= 1.0:
        raise ValueError(f"--review-below is {args.review_below}; it is a probability between 0 and 1")
    if args.max_error is not None and not 0.0 < args.max_error < 1.0:
        raise ValueError(f"--max-error is {args.max_error}; it is a share between 0 and 1")
    if args.max_error is not None and args.review_below is not None:
        raise ValueError("--review-below names a threshold and --max-error an error rate: choose one")
    if args.explain_review and args.report_only:
        raise ValueError("--explain-review sends requests and --report-only sends none: choose one")
    collection = load_collection(args.source)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "args.yaml").write_text(yaml.safe_dump(vars(args), sort_keys=False), encoding="utf-8")
    jsonl = out / "tags.jsonl"
    previous, unreadable = read_records(jsonl)
    if unreadable:
        print(f"{jsonl}: ignored {unreadable} unreadable lines (an interrupted write)", file=sys.stderr)

    start = time.perf_counter()
    new = {} if args.report_only else tag(collection, previous, jsonl, args).records
    seconds = time.perf_counter() - start
    previous.update(new)
    explained = explain_review(collection.paths, previous, jsonl, args) if args.explain_review else {}
    tagged = [previous[p] for p in collection.paths if p in previous]
    labels = model_labels(args, tagged)
    (out / "labels.json").write_text(json.dumps({"labels": labels}, indent=2) + "\n", encoding="utf-8")
    rule = resolve_rule(args.review_below, tagged, args.card, args.max_error)
    records = output_records(tagged, collection, rule, labels)
    write_csv(out / "tags.csv", records)
    versions = {r["model_version"] for r in new.values() if is_tagged(r)}
    summary = {
        "images": len(collection.paths),
        "sent": len(new),
        "skipped": len(collection.paths) - len(new),
        "seconds": round(seconds, 3),
        "images_per_second": round(len(new) / seconds, 3) if new else 0.0,
        "failed": len(collection.paths) - sum(is_tagged(r) for r in records),
        "failed_this_run": sum(not is_tagged(r) for r in new.values()),
        "review": sum(r["review"] for r in records),
        "review_rule": rule.source,
        **{k: v for k, v in review_summary(records, rule).items() if k != "rule"},
        "model_version": ", ".join(sorted(versions)) or None,
        "jsonl": str(jsonl),
        "csv": str(out / "tags.csv"),
        **explained,
    }
    if not args.no_report:
        png = risk_coverage_png(records, rule, out / "risk_coverage.png")
        extra = policy_html(records, rule, png)
        report = write_report(records, out / "report.html", rule.shown_threshold(records), args.source, labels, extra)
        summary["report"] = str(report)
    sent = (
        "report only, nothing sent"
        if args.report_only
        else f"sent {len(new)} images in {seconds:.1f} s ({summary['images_per_second']:.2f} images/s)"
    )
    print(
        f"{sent}, skipped {summary['skipped']}, served model_version {summary['model_version']}; "
        f"{summary['failed']} of {summary['images']} not tagged; {summary['review']} for review "
        f"({rule.source}; {summary['accepted']} accepted, about {summary['expected_wrong_accepted']:g} of them "
        "expected wrong)"
        + (
            f"; explained {explained['explained']} in {explained['explain_seconds']:.1f} s, "
            f"{explained['explain_failed']} explanations failed"
            if explained
            else ""
        )
    )
    return summary


main = exit_on_bad_input(run)


if __name__ == "__main__":
    main(get_args_parser().parse_args())
