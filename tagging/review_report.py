"""A static HTML review report of a tagging run: one file that opens offline in any browser.

Thumbnails are small JPEG data URIs made with Pillow and the confidence histogram is embedded the same way (and
also written beside the report as ``confidence.png``), so nothing outside the file is loaded. Images are grouped
by predicted category, the most uncertain first; images that could not be tagged are listed at the top. Where
true labels are known for a subset, per-class precision and recall on that subset come from scikit-learn.
"""

from __future__ import annotations

import base64
import html
import io
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from PIL import Image, ImageOps, UnidentifiedImageError  # noqa: E402
from sklearn.metrics import classification_report  # noqa: E402

THUMBNAIL_SIDE = 112

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
td, th { border: 1px solid #bbb; padding: 0.2em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.grid { display: flex; flex-wrap: wrap; gap: 8px; }
figure { margin: 0; width: 132px; padding: 4px; border: 2px solid #ddd; border-radius: 4px; font-size: 11px; }
figure.review { border-color: #d33; background: #fff3f3; }
figure.miss { outline: 2px dashed #e90; }
figure img { display: block; margin: 0 auto; max-width: 112px; max-height: 112px; }
figcaption { overflow-wrap: anywhere; }
.badge { background: #d33; color: #fff; border-radius: 3px; padding: 0 3px; }
.note { color: #555; max-width: 60em; }
"""


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def thumbnail(path: str | Path, side: int = THUMBNAIL_SIDE) -> str | None:
    """A small JPEG data URI of the image, or None when Pillow cannot read it."""
    try:
        with Image.open(path) as img:
            img.draft("RGB", (side * 2, side * 2))  # JPEG: decode at reduced size, much faster for big scans
            img = ImageOps.exif_transpose(img).convert("RGB")
            img.thumbnail((side, side))
            buf = io.BytesIO()
            img.save(buf, "JPEG", quality=70)
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError):
        return None
    return data_uri(buf.getvalue(), "image/jpeg")


def confidence_histogram(probabilities: Sequence[float], review_below: float, path: Path) -> bytes:
    """Histogram of top-1 probabilities with the review threshold marked; written to ``path``, bytes returned."""
    fig, ax = plt.subplots(figsize=(6.4, 3.2), dpi=100)
    ax.hist(probabilities, bins=20, range=(0.0, 1.0), color="#4a7ab5", edgecolor="white")
    ax.axvline(review_below, color="#d33", linestyle="--", label=f"review below {review_below:g}")
    ax.set_xlabel("top-1 probability")
    ax.set_ylabel("images")
    ax.set_title(f"Confidence of {len(probabilities)} tagged images")
    ax.legend()
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


def _figure(record: dict) -> str:
    uri = thumbnail(record["path"])
    name = html.escape(Path(record["path"]).name)
    image = f'<img src="{uri}" alt="{name}">' if uri else "<div>(no preview)</div>"
    title = html.escape(record["path"])
    if record.get("label") is None:
        why = html.escape(f"HTTP {record.get('status')}: {record.get('error')}")
        return f'<figure class="review" title="{title}">{image}<figcaption>{name}<br>{why}</figcaption></figure>'
    top_k = ", ".join(f"{t['label']} {t['probability']:.2f}" for t in record.get("top_k") or [])
    classes = ["review"] if record.get("review") else []
    truth = ""
    if record.get("true_label"):
        truth = f"<br>true: {html.escape(record['true_label'])}"
        if record["true_label"] != record["label"]:
            classes.append("miss")
    badge = ' <span class="badge">review</span>' if record.get("review") else ""
    return (
        f'<figure class="{" ".join(classes)}" title="{title}&#10;{html.escape(top_k)}">{image}'
        f"<figcaption><b>{record['probability']:.3f}</b>{badge}<br>{name}{truth}</figcaption></figure>"
    )


def _counts_table(tagged: Sequence[dict], failed: int) -> str:
    per_class = Counter(r["label"] for r in tagged)
    review = Counter(r["label"] for r in tagged if r.get("review"))
    rows = "".join(
        f'<tr><td><a href="#c-{html.escape(c)}">{html.escape(c)}</a></td><td>{n}</td><td>{review[c]}</td></tr>'
        for c, n in sorted(per_class.items(), key=lambda kv: (-kv[1], kv[0]))
    )
    total = f"<tr><th>all</th><th>{len(tagged)}</th><th>{sum(review.values())}</th></tr>"
    failed_row = f'<tr><td><a href="#failed">not tagged</a></td><td>{failed}</td><td></td></tr>' if failed else ""
    return f"<table><tr><th>predicted</th><th>images</th><th>for review</th></tr>{rows}{failed_row}{total}</table>"


def _metrics_table(rows: list[dict], n: int) -> str:
    if not rows:
        return "<p class='note'>No true labels are known for these images, so there is no precision/recall.</p>"
    body = "".join(
        f"<tr><td>{html.escape(r['class'])}</td><td>{r['precision']:.3f}</td><td>{r['recall']:.3f}</td>"
        f"<td>{r['f1-score']:.3f}</td><td>{int(r['support'])}</td></tr>"
        for r in rows
    )
    return (
        f"<h2>Precision and recall on the {n} image{'s' if n != 1 else ''} with a known true label</h2>"
        "<table><tr><th>class</th><th>precision</th><th>recall</th><th>F1</th><th>support</th></tr>"
        f"{body}</table>"
    )


def render(records: Sequence[dict], review_below: float, source: str, histogram_png: bytes) -> str:
    """The whole HTML document for ``records`` (each a tags.jsonl record, optionally with ``true_label``)."""
    tagged = [r for r in records if r.get("label") is not None]
    failed = [r for r in records if r.get("label") is None]
    versions = sorted({str(r.get("model_version")) for r in tagged})
    sections = []
    if failed:
        figures = "".join(_figure(r) for r in sorted(failed, key=lambda r: r["path"]))
        sections.append(f'<h2 id="failed">Not tagged ({len(failed)})</h2><div class="grid">{figures}</div>')
    by_class: dict[str, list[dict]] = {}
    for r in tagged:
        by_class.setdefault(r["label"], []).append(r)
    for label, group in sorted(by_class.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        group.sort(key=lambda r: (r["probability"], r["path"]))  # uncertain first
        n_review = sum(bool(r.get("review")) for r in group)
        figures = "".join(_figure(r) for r in group)
        sections.append(
            f'<h2 id="c-{html.escape(label)}">{html.escape(label)}: {len(group)} images, {n_review} for review</h2>'
            f'<div class="grid">{figures}</div>'
        )
    rows, n_known = precision_recall(tagged)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Review report: {html.escape(source)}</title>
<style>{STYLE}</style></head><body>
<h1>Review report: {html.escape(source)}</h1>
<p class="note">{len(records)} images; {len(tagged)} tagged by model version {html.escape(", ".join(versions) or "-")},
{len(failed)} not tagged. Images with a top-1 probability below {review_below:g} are marked
<span class="badge">review</span> (red border); a dashed outline marks a prediction that differs from a known true
label.
Within each category the least certain come first. Hover a picture for its path and top-k.</p>
{_counts_table(tagged, len(failed))}
<img src="{data_uri(histogram_png, "image/png")}" alt="confidence histogram">
{_metrics_table(rows, n_known)}
{"".join(sections)}
</body></html>
"""


def write_report(records: Sequence[dict], path: str | Path, review_below: float, source: str | Path) -> Path:
    """Write ``path`` (HTML) and ``confidence.png`` beside it; returns ``path``."""
    path = Path(path)
    probabilities = [r["probability"] for r in records if r.get("probability") is not None]
    png = confidence_histogram(probabilities, review_below, path.with_name("confidence.png"))
    path.write_text(render(records, review_below, str(source), png), encoding="utf-8")
    return path
