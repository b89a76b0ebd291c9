"""The input of ``tagging.tag_collection``: which images to tag, and the labels known for them.

A folder is searched recursively for image files; a CSV has a ``path`` column (relative paths are taken from the
CSV's folder) and an optional ``true_label`` column. In a folder, a parent folder named after a model label is the
image's true label.
"""

from __future__ import annotations

import argparse
import csv
from dataclasses import dataclass, field
from pathlib import Path

from tagging.evaluate import labels_from
from training.data import IMAGE_EXTENSIONS


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
