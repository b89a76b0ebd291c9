"""The store of a tagging run: ``tags.jsonl`` (one flushed record per answer, the latest per path wins), what a
rerun must send again, and ``tags.csv``.

A record is a prediction with its review flag, or a failure's status and error; a Grad-CAM map
(``--explain-review``) rides along as ``explanation`` while the model version that tagged the image is the same.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from tagging.client import Result
from tagging.review_policy import ReviewRule

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


def is_explained(record: dict) -> bool:
    """The record carries a Grad-CAM map made by the model version that tagged it."""
    explanation = record.get("explanation") or {}
    return bool(explanation.get("cam")) and explanation.get("model_version") == record.get("model_version")


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


def write_csv(path: Path, records: list[dict]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS, extrasaction="ignore")
        writer.writeheader()
        for record in records:
            row = dict(record)
            row["top_k"] = json.dumps(record["top_k"]) if record.get("top_k") else ""
            writer.writerow(row)
