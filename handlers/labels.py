"""Label maps: ``index_to_name.json`` ({"0": "drawings", ...}) travels inside the model archive."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence


def validate_labels(labels: Sequence[str], num_classes: int | None = None) -> None:
    """Raise ``ValueError`` unless ``labels`` are unique non-empty strings, ``num_classes`` of them."""
    if not labels:
        raise ValueError("the label list is empty")
    bad = [label for label in labels if not isinstance(label, str) or not label.strip()]
    if bad:
        raise ValueError(f"labels must be non-empty strings; got {bad!r}")
    dupes = sorted({label for label in labels if list(labels).count(label) > 1})
    if dupes:
        raise ValueError(f"duplicate labels: {dupes}")
    if num_classes is not None and len(labels) != num_classes:
        raise ValueError(f"{len(labels)} labels for a model with {num_classes} outputs")


def labels_to_index_map(labels: Sequence[str]) -> dict[str, str]:
    validate_labels(labels)
    return {str(i): label for i, label in enumerate(labels)}


def write_label_map(path: str | os.PathLike, labels: Sequence[str]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(labels_to_index_map(labels), f, indent=2)
        f.write("\n")


def read_label_map(path: str | os.PathLike, num_classes: int | None = None) -> list[str]:
    """Read ``index_to_name.json``; keys must be exactly "0".."n-1". Errors name the file and the fix."""
    if not os.path.exists(path):
        raise ValueError(f"label map {path} is missing; build the archive with `make archive`, which writes it")
    try:
        with open(path, encoding="utf-8") as f:
            mapping = json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"label map {path} is not valid JSON: {e}") from None
    if not isinstance(mapping, dict):
        raise ValueError(f'label map {path} must be a JSON object {{"0": "label", ...}}')
    expected = {str(i) for i in range(len(mapping))}
    if set(mapping) != expected:
        raise ValueError(f'label map {path} keys must be "0".."{len(mapping) - 1}"; got {sorted(mapping)}')
    labels = [mapping[str(i)] for i in range(len(mapping))]
    try:
        validate_labels(labels, num_classes)
    except ValueError as e:
        raise ValueError(f"label map {path}: {e}") from None
    return labels
