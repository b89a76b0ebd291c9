"""The data and pictures of the review report (``tagging.review_report`` renders them as HTML): thumbnails,
Grad-CAM maps as PNG, the confidence histogram, precision and recall on the known true labels, and the JSON the
page's script reads (``review_data``, keyed by ``report_id``).

Pictures are data URIs so that the report loads nothing from outside its file.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image, ImageOps, UnidentifiedImageError  # noqa: E402
from sklearn.metrics import classification_report  # noqa: E402

THUMBNAIL_SIDE = 112
#: The columns of the report's export (corrections.csv) and its decision values, which tagging.apply reads.
CORRECTION_FIELDS = ["path", "label", "decision", "model_label", "model_probability", "model_version", "reviewed_at"]
DECISIONS = ("accepted", "corrected")


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def thumbnail_image(path: str | Path, side: int = THUMBNAIL_SIDE) -> Image.Image | None:
    """The image shrunk to fit ``side`` x ``side`` (RGB, EXIF-rotated), or None when Pillow cannot read it."""
    try:
        with Image.open(path) as img:
            img.draft("RGB", (side * 2, side * 2))  # JPEG: decode at reduced size, much faster for big scans
            img = ImageOps.exif_transpose(img).convert("RGB")
            img.thumbnail((side, side))
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError):
        return None
    return img


def jpeg_uri(img: Image.Image) -> str:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=70)
    return data_uri(buf.getvalue(), "image/jpeg")


def thumbnail(path: str | Path, side: int = THUMBNAIL_SIDE) -> str | None:
    """A small JPEG data URI of the image, or None when Pillow cannot read it."""
    img = thumbnail_image(path, side)
    return None if img is None else jpeg_uri(img)


def cam_png(cam: Sequence[Sequence[float]]) -> bytes:
    """A Grad-CAM grid as a tiny RGBA PNG (one pixel per cell, 'jet' colours, alpha growing with the value);
    the browser scales it up smoothly over the thumbnail."""
    values = np.clip(np.asarray(cam, dtype=np.float32), 0.0, 1.0)
    if values.ndim != 2 or not values.size:
        raise ValueError(f"a Grad-CAM map is a non-empty 2-D grid, not shape {values.shape}")
    rgba = matplotlib.colormaps["jet"](values)
    rgba[..., 3] = 0.15 + 0.85 * values
    buf = io.BytesIO()
    Image.fromarray((rgba * 255).round().astype(np.uint8), "RGBA").save(buf, "PNG")
    return buf.getvalue()


def confidence_histogram(probabilities: Sequence[float], review_below: float, path: Path) -> bytes:
    """Histogram of top-1 probabilities with the review threshold marked; written to ``path``, bytes returned."""
    fig, ax = plt.subplots(figsize=(6.4, 3.2), dpi=100)
    ax.hist(probabilities, bins=20, range=(0.0, 1.0), color="#4a7ab5", edgecolor="white")
    ax.axvline(review_below, color="#d33", linestyle="--", label=f"review below {review_below:g}")
    ax.set_xlabel("top-1 probability")
    ax.set_ylabel("images")
    ax.set_title(f"Confidence of {len(probabilities)} tagged images")
    ax.legend()
    return save_png(fig, path)


def save_png(fig, path: Path) -> bytes:
    """``fig`` as a PNG written to ``path`` (the figure closed); the bytes, for a data URI."""
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    path.write_bytes(buf.getvalue())
    return buf.getvalue()


def precision_recall(records: Sequence[dict]) -> tuple[list[dict], int]:
    """Per-class precision/recall/F1/support on the tagged records with a true label; (rows, subset size)."""
    known = [r for r in records if r.get("true_label") and r.get("label")]
    if not known:
        return [], 0
    y_true = [r["true_label"] for r in known]
    y_pred = [r["label"] for r in known]
    classes = sorted(set(y_true) | set(y_pred))
    report = classification_report(y_true, y_pred, labels=classes, output_dict=True, zero_division=0)
    rows = [{"class": c, **{k: report[c][k] for k in ("precision", "recall", "f1-score", "support")}} for c in classes]
    return rows, len(known)


def report_id(records: Sequence[dict]) -> str:
    """The key of the page's decisions in the browser: a hash of the image paths and the model versions that
    tagged them. Tags by another model (or of other images) get a fresh review; a rerun of the same run (a probe,
    retried failures, ``--explain-review``, ``--report-only``) keeps the review, because its tags are the same."""
    basis = {
        "paths": sorted(r["path"] for r in records),
        "model_versions": sorted({str(r.get("model_version")) for r in records if r.get("label") is not None}),
    }
    return hashlib.sha256(json.dumps(basis, sort_keys=True).encode("utf-8")).hexdigest()[:16]


def review_data(
    records: Sequence[dict], reviewable: Sequence[dict], labels: Sequence[str], review_below: float
) -> dict:
    """What the page's script reads: the labels to choose from and one entry per reviewable image, in page order."""
    return {
        "report_id": report_id(records),
        "labels": list(labels),
        "columns": CORRECTION_FIELDS,
        "review_below": review_below,
        "items": [
            {
                "path": r["path"],
                "label": r["label"],
                "probability": r["probability"],
                "model_version": r.get("model_version"),
                "review": bool(r.get("review")),
                "true_label": r.get("true_label") or None,
                "explained": bool((r.get("explanation") or {}).get("cam")),
            }
            for r in reviewable
        ],
    }
