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
import csv
import json
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import yaml
from tqdm import tqdm

from handlers import MODEL_NAME
from tagging.client import Client, Result
from tagging.evaluate import labels_from
from tagging.review_policy import ReviewRule, policy_html, resolve_rule, risk_coverage_png
from tagging.review_policy import summary as review_summary
from tagging.review_report import write_report
from training import exit_on_bad_input
from training.data import IMAGE_EXTENSIONS

DEFAULT_URL = f"http://127.0.0.1:8080/predictions/{MODEL_NAME}"
#: What a record keeps of an explanations answer (tagging.client gets the whole body).
EXPLANATION_FIELDS = ("explains", "method", "cam", "height", "width", "crop_fraction", "model_version")
CSV_FIELDS = [
    "path",
    "label",
    "probability",
    "top_k",
    "model_version",
    "review",
    "policy_review_below",
    "true_label",
    "status",
    "error",
]


@dataclass
class Collection:
    """The images to tag, as absolute paths, with the true labels the input states (CSV column only)."""

    paths: list[str]
    true_labels: dict[str, str] = field(default_factory=dict)
    from_folder: bool = False


def find_images(root: Path) -> list[str]:
    """Image files under ``root`` (recursive, by extension, hidden folders skipped), sorted, absolute."""
    return sorted(
        str(p.resolve())
        for p in root.rglob("*")
        if p.is_file()
        and p.suffix.lower() in IMAGE_EXTENSIONS
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )


def read_path_csv(path: Path) -> Collection:
    """A CSV with a ``path`` column and an optional ``true_label`` column; relative paths start at its folder."""
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or "path" not in reader.fieldnames:
            raise ValueError(f"{path}: needs a header row with a 'path' column (found {reader.fieldnames})")
        paths, true_labels = [], {}
        for row in reader:
            if not (row.get("path") or "").strip():
                continue
            image = Path(row["path"].strip())
            image = str((image if image.is_absolute() else path.parent / image).resolve())
            paths.append(image)
            if (row.get("true_label") or "").strip():
                true_labels[image] = row["true_label"].strip()
    return Collection(list(dict.fromkeys(paths)), true_labels)


def load_collection(source: str | Path) -> Collection:
    source = Path(source)
    if source.is_dir():
        paths = find_images(source)
        if not paths:
            raise ValueError(f"{source} holds no image files ({', '.join(IMAGE_EXTENSIONS)})")
        return Collection(paths, from_folder=True)
    if source.suffix.lower() == ".csv" and source.is_file():
        return read_path_csv(source)
    raise FileNotFoundError(f"{source} is neither a folder of images nor a CSV file of paths")


def read_records(jsonl: Path) -> tuple[dict[str, dict], int]:
    """The latest record per path in ``jsonl`` and the number of unreadable lines (a crash's half-written tail)."""
    latest, bad = {}, 0
    if not jsonl.exists():
        return latest, bad
    with jsonl.open(encoding="utf-8") as f:
        for line in f:
            try:
                record = json.loads(line)
                latest[record["path"]] = record
            except (ValueError, KeyError, TypeError):
                bad += 1
    return latest, bad


def end_line(path: Path) -> None:
    """After a crash mid-write, start on a fresh line rather than extend the torn one."""
    if path.exists() and path.stat().st_size:
        with path.open("rb+") as f:
            f.seek(-1, 2)
            if f.read(1) != b"\n":
                f.write(b"\n")


def to_record(result: Result, rule: ReviewRule) -> dict:
    """One JSONL line: the prediction with the model's policy threshold (``policy_review_below``, when it has one)
    and its review flag under this run's rule, or a failure's status and error."""
    body = result.body if result.ok else {}
    record = {
        "path": result.path,
        "label": body.get("label"),
        "probability": body.get("probability"),
        "top_k": body.get("top_k"),
        "model_version": body.get("model_version"),
        "policy_review_below": body.get("review_below"),
        "status": result.status,
        "error": result.error,
        "attempts": result.attempts,
        "seconds": round(result.seconds, 4),
        "tagged_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    return {**record, "review": rule.needs_review(record)}


def is_tagged(record: dict | None) -> bool:
    return bool(record) and record.get("error") is None and record.get("label") is not None


@dataclass
class Plan:
    """What a run sends: first the probe (one already-tagged image) and the untagged ones, then the stale ones."""

    first: list[str]
    tagged: dict[str, str]  # path -> model_version of its successful record, before this run

    def stale(self, version: str | None, answered: set[str]) -> list[str]:
        """Tagged images whose version differs from the one served now (none if that is unknown)."""
        if version is None:
            return []
        return [p for p, v in self.tagged.items() if v != version and p not in answered]


def plan_run(paths: Iterable[str], previous: dict[str, dict]) -> Plan:
    paths = list(paths)
    tagged = {p: previous[p]["model_version"] for p in paths if is_tagged(previous.get(p))}
    untagged = [p for p in paths if p not in tagged]
    probe = [next(iter(tagged))] if tagged else []
    return Plan(probe + untagged, tagged)


def is_explained(record: dict) -> bool:
    """The record carries a Grad-CAM map made by the model version that tagged it."""
    explanation = record.get("explanation") or {}
    return bool(explanation.get("cam")) and explanation.get("model_version") == record.get("model_version")


class Tagger:
    """Sends paths through a :class:`Client`, appending one flushed JSONL record per answer. A Grad-CAM map in
    the ``previous`` record of a path stays with its new record when the same model version answered."""

    def __init__(
        self, client: Client, jsonl: Path, rule: ReviewRule, concurrency: int, previous: dict[str, dict]
    ) -> None:
        self.client, self.jsonl, self.rule, self.concurrency = client, jsonl, rule, concurrency
        self.previous = previous
        self.records: dict[str, dict] = {}
        self.version: str | None = None
        self.failed = self.review = 0  # counted as answers arrive (each path is sent once per run)

    def send(self, paths: list[str], bar: tqdm) -> None:
        if not paths:
            return
        end_line(self.jsonl)
        with self.jsonl.open("a", encoding="utf-8") as out:
            for result in self.client.classify_many(paths, self.concurrency):
                record = to_record(result, self.rule)
                before = self.previous.get(record["path"]) or {}
                if is_explained(before) and before["model_version"] == record["model_version"]:
                    record.update(explanation=before["explanation"], explained_at=before.get("explained_at"))
                out.write(json.dumps(record) + "\n")
                out.flush()
                self.records[record["path"]] = record
                self.failed += not is_tagged(record)
                self.review += record["review"]
                if is_tagged(record) and self.version is None:
                    self.version = record["model_version"]
                bar.update(1)
                bar.set_postfix(failed=self.failed, review=self.review, refresh=False)


def write_csv(path: Path, records: list[dict]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS, extrasaction="ignore")
        writer.writeheader()
        for record in records:
            row = dict(record)
            row["top_k"] = json.dumps(record["top_k"]) if record.get("top_k") else ""
            writer.writerow(row)


def model_labels(args: argparse.Namespace, records: list[dict]) -> list[str]:
    """The model's labels: from ``--labels-from``, else every label the server put in any top-k answer."""
    if args.labels_from:
        return labels_from(args.labels_from)
    return sorted({entry["label"] for r in records for entry in (r.get("top_k") or [])})


def true_labels(collection: Collection, labels: list[str]) -> dict[str, str]:
    """Known true labels: the CSV column, else (folder input) the parent folder name when it is a model label."""
    if not collection.from_folder:
        return dict(collection.true_labels)
    return {p: Path(p).parent.name for p in collection.paths if Path(p).parent.name in labels}


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


def tag(collection: Collection, previous: dict[str, dict], jsonl: Path, args: argparse.Namespace) -> Tagger:
    """Send what :func:`plan_run` says to the endpoint, with a progress bar; the tagger holds the new records."""
    plan = plan_run(collection.paths, previous)
    client = Client(args.url, timeout=args.timeout, retries=args.retries, backoff=args.backoff)
    tagger = Tagger(client, jsonl, ReviewRule(args.review_below, ""), args.concurrency, previous)
    with tqdm(total=len(plan.first), unit="img", desc="tagging", file=sys.stderr, dynamic_ncols=True) as bar:
        tagger.send(plan.first, bar)
        stale = plan.stale(tagger.version, set(tagger.records))
        bar.total += len(stale)
        tagger.send(stale, bar)
    return tagger


def explain_url(args: argparse.Namespace) -> str:
    if args.explain_url:
        return args.explain_url
    if "/predictions/" not in args.url:
        raise ValueError(f"--url {args.url} has no /predictions/ to turn into the explanations URL; give --explain-url")
    return args.url.replace("/predictions/", "/explanations/", 1)


def explain_review(paths: list[str], previous: dict[str, dict], jsonl: Path, args: argparse.Namespace) -> dict:
    """Append, for each image flagged for review without a map of its model version, its record with the
    Grad-CAM ``explanation``; ``previous`` is updated. Failures are counted and reported, never stop the run."""
    rule = ReviewRule(args.review_below, "")
    todo = [p for p in paths if is_tagged(previous.get(p)) and rule.needs_review(previous[p])]
    todo = [p for p in todo if not is_explained(previous[p])]
    client = Client(explain_url(args), timeout=args.timeout, retries=args.retries, backoff=args.backoff)
    explained, failures = 0, []
    start = time.perf_counter()
    end_line(jsonl)
    with (
        jsonl.open("a", encoding="utf-8") as out,
        tqdm(total=len(todo), unit="img", desc="explaining", file=sys.stderr, dynamic_ncols=True) as bar,
    ):
        for result in client.classify_many(todo, args.concurrency):
            body = result.body if result.ok else {}
            if body.get("cam"):
                explanation = {k: body.get(k) for k in EXPLANATION_FIELDS}
                record = dict(previous[result.path], explanation=explanation)
                record["explained_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
                out.write(json.dumps(record) + "\n")
                out.flush()
                previous[result.path] = record
                explained += 1
            else:
                failures.append(f"{result.path}: {result.error or 'the answer has no Grad-CAM map'}")
            bar.update(1)
    seconds = time.perf_counter() - start
    if failures:
        print(f"{len(failures)} explanations failed, e.g. {failures[0]}", file=sys.stderr)
    return {"explained": explained, "explain_failed": len(failures), "explain_seconds": round(seconds, 3)}


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
    rule = resolve_rule(args.review_below, tagged, args.card)
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
