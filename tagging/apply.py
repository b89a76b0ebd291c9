"""Apply a curator's decisions (the review report's ``corrections.csv``) to a tagging run: the collection's final tags.

    python -m tagging.apply runs/tag/val ~/Downloads/corrections.csv
    make apply OUT=runs/tag/val CORRECTIONS=~/Downloads/corrections.csv

Reads ``TAG_DIR/tags.csv`` (the latest tag of every image of the run, written by ``tagging.tag_collection``) and
``TAG_DIR/labels.json`` (the model's labels) and writes ``TAG_DIR/final_tags.csv`` (or ``--out``), one row per
image: ``path, label, source, decision, model_label, model_probability, model_version, reviewed_at``.
``source`` is ``curator`` for every image with a decision, accepted or corrected (a person confirmed the label),
``model`` for the others (the model's label), ``untagged`` for an image the model could not tag and nobody
labelled (empty label).

The corrections are refused, with a message naming the offending rows, when a path is not in the tagging output,
a label is not one of the model's labels, a decision is neither ``accepted`` nor ``corrected``, an ``accepted``
label is not the label the model gave, or a path is decided twice. Nothing is written then.

``final_tags.csv`` is also a training input: ``training.train --extra-train TAG_DIR/final_tags.csv`` adds its
``source=curator`` rows to the training split and skips the model's own tags.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from tagging.evaluate import labels_from
from tagging.report_data import CORRECTION_FIELDS, DECISIONS
from training import exit_on_bad_input

FINAL_FIELDS = ["path", "label", "source", *CORRECTION_FIELDS[2:]]
SHOWN = 5  # offending rows named in a refusal, per kind


def read_csv(path: Path, required: list[str]) -> list[dict]:
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: lacks the columns {missing} (has {reader.fieldnames})")
        return list(reader)


def named(problems: list[str]) -> str:
    more = f" and {len(problems) - SHOWN} more" if len(problems) > SHOWN else ""
    return "; ".join(problems[:SHOWN]) + more


def check_corrections(corrections: list[dict], tags: dict[str, dict], labels: list[str], source: Path) -> None:
    """Raise ValueError naming every kind of mismatch between the corrections and the tagging output."""
    unknown, bad_labels, bad_decisions, not_model, seen, twice = [], [], [], [], set(), []
    for line, row in enumerate(corrections, start=2):
        path, label, decision = row["path"], row["label"], row["decision"]
        if path not in tags:
            unknown.append(f"line {line}: {path}")
        if label not in labels:
            bad_labels.append(f"line {line}: {label!r}")
        if decision not in DECISIONS:
            bad_decisions.append(f"line {line}: {decision!r}")
        elif decision == "accepted" and path in tags and label != tags[path]["label"]:
            not_model.append(f"line {line}: {path} accepted as {label!r}, the model said {tags[path]['label']!r}")
        if path in seen:
            twice.append(f"line {line}: {path}")
        seen.add(path)
    problems = [
        (unknown, "paths are not in the tagging output (tags.csv)"),
        (bad_labels, f"labels are not the model's labels {labels}"),
        (bad_decisions, f"decisions are not one of {list(DECISIONS)}"),
        (not_model, "accepted labels are not the model's label (was the collection tagged again since?)"),
        (twice, "paths are decided more than once"),
    ]
    messages = [f"{len(rows)} {what}: {named(rows)}" for rows, what in problems if rows]
    if messages:
        raise ValueError(f"{source} does not match the tagging output, nothing written. " + ". ".join(messages))


def final_tags(tags: dict[str, dict], corrections: list[dict]) -> list[dict]:
    """One row per tagged image in ``tags`` order: the curator's label where decided, else the model's."""
    decided = {row["path"]: row for row in corrections}
    rows = []
    for path, tag in tags.items():
        model = {"model_label": tag["label"], "model_probability": tag["probability"]}
        model["model_version"] = tag["model_version"]
        if path in decided:
            d = decided[path]
            rows.append({"path": path, "label": d["label"], "source": "curator", "decision": d["decision"], **model,
                         "reviewed_at": d.get("reviewed_at", "")})  # fmt: skip
        else:
            source = "model" if tag["label"] else "untagged"
            rows.append({"path": path, "label": tag["label"], "source": source, "decision": "", **model})
    return rows


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("tag_dir", help="a tag_collection output folder, with tags.csv and labels.json (required)")
    p.add_argument("corrections", help="the corrections.csv exported from the review report (required)")
    p.add_argument("--out", default=None, help="final tags CSV to write (default: TAG_DIR/final_tags.csv)")
    p.add_argument(
        "--labels-from",
        default=None,
        help="checkpoint, model card or index_to_name.json with the model's labels (default: TAG_DIR/labels.json)",
    )
    return p


def run(args: argparse.Namespace) -> dict:
    """Check the corrections, write the final tags; return counts (also printed as one line)."""
    tag_dir, source = Path(args.tag_dir), Path(args.corrections)
    labels_file = Path(args.labels_from) if args.labels_from else tag_dir / "labels.json"
    if not labels_file.exists():
        raise FileNotFoundError(
            f"{labels_file} is missing: rerun tagging.tag_collection (--report-only writes it) or give --labels-from"
        )
    labels = labels_from(labels_file)
    tags = {row["path"]: row for row in read_csv(tag_dir / "tags.csv", ["path", "label", "probability"])}
    corrections = read_csv(source, ["path", "label", "decision"])
    check_corrections(corrections, tags, labels, source)
    rows = final_tags(tags, corrections)
    out = Path(args.out) if args.out else tag_dir / "final_tags.csv"
    with out.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=FINAL_FIELDS, restval="")
        writer.writeheader()
        writer.writerows(rows)
    counts = {s: sum(r["source"] == s for r in rows) for s in ("curator", "model", "untagged")}
    counts["corrected"] = sum(r["decision"] == "corrected" for r in rows)
    print(
        f"wrote {out}: {len(rows)} images, {counts['curator']} from the curator ({counts['corrected']} corrected), "
        f"{counts['model']} from the model, {counts['untagged']} untagged; "
        f"train on the curator's with: python -m training.train --extra-train {out}"
    )
    return {"out": str(out), **counts}


main = exit_on_bad_input(run)


if __name__ == "__main__":
    main(get_args_parser().parse_args())
