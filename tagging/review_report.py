"""A static HTML review report of a tagging run: one file that opens offline in any browser, where a curator
accepts or corrects each tag and exports the decisions as ``corrections.csv`` (for ``tagging.apply``).

Thumbnails are small JPEG data URIs made with Pillow (``loading="lazy"``) and the confidence histogram is embedded
the same way (and also written beside the report as ``confidence.png``), so nothing outside the file is loaded.
Images are grouped by predicted category, the most uncertain first; images that could not be tagged are listed at
the top. Where true labels are known for a subset, per-class precision and recall on that subset come from
scikit-learn. A Grad-CAM map stored with a record (``tag_collection --explain-review``) becomes a tiny PNG laid
over the part of the thumbnail the model saw (its centred crop), shown or hidden by a checkbox.

The review itself is plain JavaScript (``review_report.js``, inlined): the page's data (labels, report id, one
entry per image) is a JSON block; decisions live in the browser's ``localStorage`` under the report id (a hash
of the image paths and the model versions), so reopening the file, or a re-rendered one, keeps them. This
module writes the HTML; the data and pictures it shows come from ``tagging.report_data``.
"""

from __future__ import annotations

import html
import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from tagging.report_data import (
    cam_png,
    confidence_histogram,
    data_uri,
    jpeg_uri,
    precision_recall,
    review_data,
    thumbnail_image,
)

SCRIPT = Path(__file__).with_name("review_report.js")

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
td, th { border: 1px solid #bbb; padding: 0.2em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.grid { display: flex; flex-wrap: wrap; gap: 8px; }
figure { margin: 0; width: 150px; padding: 4px; border: 2px solid #ddd; border-radius: 4px; font-size: 11px; }
figure.review { border-color: #d33; background: #fff3f3; }
figure.miss { outline: 2px dashed #e90; }
figure:focus { box-shadow: 0 0 0 3px #36c; outline-offset: 2px; }
figure.accepted { border-color: #2a2; background: #f0fff0; }
figure.corrected { border-color: #36c; background: #f0f4ff; }
.thumb { position: relative; width: max-content; margin: 0 auto; }
.thumb img { display: block; max-width: 112px; max-height: 112px; }
.thumb img.cam { position: absolute; max-width: none; max-height: none; pointer-events: none; opacity: 0.6; }
body.no-cam .thumb img.cam { display: none; }
figcaption { overflow-wrap: anywhere; }
.badge { background: #d33; color: #fff; border-radius: 3px; padding: 0 3px; }
.note { color: #555; max-width: 60em; }
.pick { display: flex; flex-wrap: wrap; gap: 2px; margin-top: 3px; }
.pick button { font-size: 10px; padding: 0 3px; border: 1px solid #aaa; border-radius: 3px; background: #fff; }
.pick button.model { font-weight: bold; }
.pick button.chosen { background: #36c; color: #fff; border-color: #36c; }
.decision { min-height: 1.2em; font-weight: bold; }
.hidden { display: none !important; }
#review-bar { position: sticky; top: 0; z-index: 2; background: #f4f4f4; border-bottom: 1px solid #bbb;
  padding: 0.4em 0.6em; margin: 0 -0.6em 1em; display: flex; flex-wrap: wrap; gap: 0.5em 1.2em; align-items: center; }
#review-bar .keys { color: #555; font-size: 12px; }
#review-count { font-weight: bold; }
"""


def cam_overlay(explanation: dict, size: tuple[int, int]) -> str:
    """An ``<img class="cam">`` over the centred square (``crop_fraction`` of the shorter side) the map covers."""
    w, h = size
    side = explanation.get("crop_fraction", 1.0) * min(w, h)
    width, height = 100 * side / w, 100 * side / h
    style = f"left:{(100 - width) / 2:.2f}%;top:{(100 - height) / 2:.2f}%;width:{width:.2f}%;height:{height:.2f}%"
    label = html.escape(f"Grad-CAM of {explanation.get('explains', '?')}")
    uri = data_uri(cam_png(explanation["cam"]), "image/png")
    return f'<img class="cam" src="{uri}" alt="{label}" title="{label}" style="{style}">'


def _thumb(record: dict) -> str:
    img = thumbnail_image(record["path"])
    if img is None:
        return '<div class="thumb">(no preview)</div>'
    name = html.escape(Path(record["path"]).name)
    explanation = record.get("explanation")
    overlay = cam_overlay(explanation, img.size) if explanation and explanation.get("cam") else ""
    return f'<div class="thumb"><img loading="lazy" src="{jpeg_uri(img)}" alt="{name}">{overlay}</div>'


def _picker(labels: Sequence[str], model_label: str) -> str:
    """One button per label (digit keys 1..9, then 0 for the tenth) and the accept button."""
    buttons = []
    for n, label in enumerate(labels):
        key = f"{(n + 1) % 10}" if n < 10 else ""
        attrs = f' data-label="{html.escape(label)}"' + (' class="model"' if label == model_label else "")
        attrs += f' title="key {key}"' if key else ""
        buttons.append(f'<button type="button"{attrs}>{key} {html.escape(label)}</button>')
    accept = '<button type="button" class="accept" title="key a or Enter">accept</button>'
    return f'<div class="pick">{"".join(buttons)}{accept}</div>'


def _figure(record: dict, index: int | None, labels: Sequence[str]) -> str:
    """One image; ``index`` is its entry in the page's review data (None: not reviewable, e.g. not tagged)."""
    name = html.escape(Path(record["path"]).name)
    title = html.escape(record["path"])
    if record.get("label") is None:
        why = html.escape(f"HTTP {record.get('status')}: {record.get('error')}")
        caption = f"<figcaption>{name}<br>{why}</figcaption>"
        return f'<figure class="review" title="{title}">{_thumb(record)}{caption}</figure>'
    top_k = ", ".join(f"{t['label']} {t['probability']:.2f}" for t in record.get("top_k") or [])
    classes = ["item"] + (["review"] if record.get("review") else [])
    truth = ""
    if record.get("true_label"):
        truth = f"<br>true: {html.escape(record['true_label'])}"
        if record["true_label"] != record["label"]:
            classes.append("miss")
    badge = ' <span class="badge">review</span>' if record.get("review") else ""
    return (
        f'<figure class="{" ".join(classes)}" tabindex="0" data-i="{index}" title="{title}&#10;{html.escape(top_k)}">'
        f"{_thumb(record)}<figcaption><b>{record['probability']:.3f}</b>{badge}<br>{name}{truth}</figcaption>"
        f'{_picker(labels, record["label"])}<div class="decision"></div></figure>'
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


def script_json(doc: dict) -> str:
    """JSON that is safe inside a ``<script>`` element (no ``</script>`` in a path can end it)."""
    return json.dumps(doc, ensure_ascii=False).replace("<", "\\u003c")


def _review_bar(labels: Sequence[str], explained: int) -> str:
    options = "".join(f'<option value="{html.escape(c)}">{html.escape(c)}</option>' for c in labels)
    overlay = (
        f'<label title="the Grad-CAM maps of {explained} images"><input type="checkbox" id="show-cam" checked> '
        "Grad-CAM overlay</label>"
        if explained
        else ""
    )
    return f"""<div id="review-bar"><span id="review-count">reviewed 0 / 0</span>
<label>show <select id="filter-status"><option value="all">all images</option>
<option value="review">for review</option><option value="disagree">disagrees with a known label</option>
<option value="todo">not reviewed yet</option></select></label>
<label>predicted <select id="filter-class"><option value="">any class</option>{options}</select></label>
{overlay}<button type="button" id="export">Export corrections.csv</button>
<span class="keys">keys: arrows move, {"1-" + str(len(labels)) if len(labels) < 10 else "1-9, 0"} pick a label,
a or Enter accepts the model's label, u or Backspace undoes</span>
<span id="storage-warning" class="badge hidden">decisions cannot be saved in this browser (localStorage)</span></div>"""


def render(
    records: Sequence[dict],
    review_below: float,
    source: str,
    histogram_png: bytes,
    labels: Sequence[str] | None = None,
    extra_html: str = "",
) -> str:
    """The whole HTML document for ``records`` (each a tags.jsonl record, optionally with ``true_label`` and
    ``explanation``); ``labels`` are the model's labels a curator chooses from (default: those in the records)."""
    tagged = [r for r in records if r.get("label") is not None]
    failed = [r for r in records if r.get("label") is None]
    if labels is None:
        labels = sorted({r["label"] for r in tagged} | {t["label"] for r in tagged for t in r.get("top_k") or []})
    versions = sorted({str(r.get("model_version")) for r in tagged})
    sections = []
    if failed:
        figures = "".join(_figure(r, None, labels) for r in sorted(failed, key=lambda r: r["path"]))
        sections.append(f'<h2 id="failed">Not tagged ({len(failed)})</h2><div class="grid">{figures}</div>')
    by_class: dict[str, list[dict]] = {}
    for r in tagged:
        by_class.setdefault(r["label"], []).append(r)
    reviewable: list[dict] = []
    for label, group in sorted(by_class.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        group.sort(key=lambda r: (r["probability"], r["path"]))  # uncertain first
        n_review = sum(bool(r.get("review")) for r in group)
        figures = "".join(_figure(r, len(reviewable) + n, labels) for n, r in enumerate(group))
        reviewable += group
        sections.append(
            f'<section class="class-section"><h2 id="c-{html.escape(label)}">{html.escape(label)}: {len(group)} '
            f'images, {n_review} for review</h2><div class="grid">{figures}</div></section>'
        )
    rows, n_known = precision_recall(tagged)
    data = review_data(records, reviewable, labels, review_below)
    explained = sum(item["explained"] for item in data["items"])
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Review report: {html.escape(source)}</title>
<style>{STYLE}</style></head><body>
<h1>Review report: {html.escape(source)}</h1>
{_review_bar(labels, explained)}
<p class="note">{len(records)} images; {len(tagged)} tagged by model version {html.escape(", ".join(versions) or "-")},
{len(failed)} not tagged. Images with a top-1 probability below the review threshold ({review_below:g}) are marked
<span class="badge">review</span> (red border); a dashed outline marks a prediction that differs from a known true
label.
Within each category the least certain come first. Hover a picture for its path and top-k.
Accept or correct each tag with the buttons or the keys; decisions are kept in this browser for this report
(id {data["report_id"]}) until you export them and apply them with <code>python -m tagging.apply</code>.
{f"{explained} thumbnails carry the Grad-CAM map of the predicted class (over the crop it saw)." if explained else ""}
</p>
{_counts_table(tagged, len(failed))}
<img src="{data_uri(histogram_png, "image/png")}" alt="confidence histogram">
{extra_html}
{_metrics_table(rows, n_known)}
{"".join(sections)}
<script id="review-data" type="application/json">{script_json(data)}</script>
<script>{SCRIPT.read_text(encoding="utf-8")}</script>
</body></html>
"""


def write_report(
    records: Sequence[dict],
    path: str | Path,
    review_below: float,
    source: str | Path,
    labels: Sequence[str] | None = None,
    extra_html: str = "",
) -> Path:
    """Write ``path`` (HTML) and ``confidence.png`` beside it; returns ``path``. ``extra_html`` goes under the
    histogram (the review rule's paragraph, ``tagging.review_policy``)."""
    path = Path(path)
    probabilities = [r["probability"] for r in records if r.get("probability") is not None]
    png = confidence_histogram(probabilities, review_below, path.with_name("confidence.png"))
    path.write_text(render(records, review_below, str(source), png, labels, extra_html), encoding="utf-8")
    return path
