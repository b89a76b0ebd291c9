"""The sending loop of ``tagging.tag_collection``: images through the prediction endpoint, and the images
flagged for review through the explanations endpoint, each answer appended to ``tags.jsonl`` as it arrives.

Per-image failures are recorded (tagging) or counted (explaining) and never stop the run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from tqdm import tqdm

from tagging.client import Client
from tagging.collection import Collection
from tagging.records import end_line, is_explained, is_tagged, plan_run, to_record
from tagging.review_policy import ReviewRule

#: What a record keeps of an explanations answer (tagging.client gets the whole body).
EXPLANATION_FIELDS = ("explains", "method", "cam", "height", "width", "crop_fraction", "model_version")


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
