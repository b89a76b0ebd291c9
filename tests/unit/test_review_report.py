"""The review report's embedded data (what its script reads), thumbnails and Grad-CAM overlays, without a browser."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

from PIL import Image

from tagging import report_data, review_report
from tests.images import ART5_LABELS, jpeg

VERSION = "tiny_vgg-0123456789ab"
CAM = [[0.0, 0.5, 1.0], [0.25, 0.75, 0.0]]


def records(tmp_path: Path) -> list[dict]:
    """Two classes of tagged images (one explained, one with a wrong known label, a '<' in a name), one failure."""
    rows = []
    for i, (label, probability) in enumerate([("painting", 0.9), ("painting", 0.3), ("drawings", 0.4)]):
        path = tmp_path / f"{i}<b>.jpg"
        path.write_bytes(jpeg((120, 80), seed=i))
        rows.append({"path": str(path), "label": label, "probability": probability, "model_version": VERSION,
                     "review": probability < 0.5, "tagged_at": f"2026-12-03T08:00:0{i}+00:00",
                     "top_k": [{"label": label, "probability": probability}]})  # fmt: skip
    rows[1]["explanation"] = {"explains": "painting", "cam": CAM, "crop_fraction": 0.875, "model_version": VERSION}
    rows[2]["true_label"] = "engraving"
    rows.append({"path": str(tmp_path / "gone.jpg"), "label": None, "status": None, "error": "cannot read file"})
    return rows


def render(rows: list[dict], labels=ART5_LABELS) -> str:
    return review_report.render(rows, 0.5, "collection", b"png", labels)


def page_data(html: str) -> dict:
    match = re.search(r'<script id="review-data" type="application/json">(.*?)</script>', html, re.S)
    assert match, "the page has no review-data block"
    return json.loads(match.group(1))


def test_the_page_data_lists_the_reviewable_images_in_page_order(tmp_path):
    rows = records(tmp_path)
    html = render(rows)
    data = page_data(html)
    assert data["labels"] == ART5_LABELS, f"the labels must be the model's, as given: {data['labels']}"
    assert data["columns"] == report_data.CORRECTION_FIELDS, f"export columns: {data['columns']}"
    paths = [item["path"] for item in data["items"]]
    # painting (2 images) before drawings (1); least certain first within a class; the failure is not reviewable.
    assert paths == [rows[1]["path"], rows[0]["path"], rows[2]["path"]], f"page order: {paths}"
    indices = [int(i) for i in re.findall(r'<figure class="item[^"]*" tabindex="0" data-i="(\d+)"', html)]
    assert indices == [0, 1, 2], f"figures must point at their entries in order: {indices}"
    first, _, last = data["items"]
    assert first == {"path": rows[1]["path"], "label": "painting", "probability": 0.3, "model_version": VERSION,
                     "review": True, "true_label": None, "explained": True}, first  # fmt: skip
    assert last["true_label"] == "engraving" and not last["explained"], last
    assert html.count('<button type="button" data-label=') == 3 * len(ART5_LABELS), "one button per label and image"
    assert 'title="key 5">5 sculpture</button>' in html, "the label buttons must show their digit keys"


def test_the_report_id_follows_the_paths_and_model_versions(tmp_path):
    rows = records(tmp_path)
    first = page_data(render(rows))["report_id"]
    assert page_data(render(rows))["report_id"] == first, "re-rendering the same tags must keep the id"
    assert page_data(render([dict(r) for r in reversed(rows)]))["report_id"] == first, "order must not matter"
    retagged = [dict(r, tagged_at="2026-12-04T00:00:00+00:00") if r.get("label") else r for r in rows]
    assert page_data(render(retagged))["report_id"] == first, "a rerun by the same model must keep the review"
    other_version = [dict(r, model_version="v2") if r.get("label") else r for r in rows]
    for changed in (rows[:-1], other_version):
        assert page_data(render(changed))["report_id"] != first, "other images or another model: another id"


def test_nothing_in_the_page_can_end_its_script_or_load_from_outside(tmp_path):
    doc = {"path": "</script><script>alert(1)</script>"}
    assert "</" not in review_report.script_json(doc), "a path must not close the data block"
    assert json.loads(review_report.script_json(doc)) == doc, "the escaped JSON must read back the same"
    html = render(records(tmp_path))
    assert html.count("<script") == 2 and "http://" not in html and "https://" not in html, "only inline scripts"
    assert html.count('<img loading="lazy" src="data:image/jpeg;base64,') == 3, "three lazy thumbnails"
    assert "(no preview)" in html and "Not tagged (1)" in html, "the failure is shown, without buttons"


def test_an_explained_image_gets_its_map_over_the_crop_the_model_saw(tmp_path):
    html = render(records(tmp_path))
    overlays = re.findall(
        r'<img class="cam" src="data:image/png;base64,([^"]+)" alt="([^"]+)"[^>]*style="([^"]+)"', html
    )
    assert len(overlays) == 1, f"one overlay for the one explained image, found {len(overlays)}"
    _, alt, style = overlays[0]
    assert alt == "Grad-CAM of painting", alt
    # A 120x80 image shrinks to 112x75; the map covers the centred 0.875 * 75 px square.
    side_w, side_h = 100 * 0.875 * 75 / 112, 100 * 0.875
    assert style == (
        f"left:{(100 - side_w) / 2:.2f}%;top:{(100 - side_h) / 2:.2f}%;width:{side_w:.2f}%;height:{side_h:.2f}%"
    ), style
    assert 'id="show-cam" checked' in html, "an overlay toggle when some image is explained"
    assert 'id="show-cam"' not in render([r for r in records(tmp_path) if "explanation" not in r]), "no toggle"


def test_the_map_png_has_one_pixel_per_cell_and_more_opacity_where_higher():
    with Image.open(io.BytesIO(report_data.cam_png(CAM))) as img:
        assert img.mode == "RGBA" and img.size == (3, 2), f"{img.mode} {img.size}"
        alpha = [img.getpixel((x, 0))[3] for x in range(3)]
    assert alpha[0] < alpha[1] < alpha[2] == 255, f"alpha must grow with the value: {alpha}"


def test_labels_default_to_those_in_the_answers(tmp_path):
    data = page_data(review_report.render(records(tmp_path), 0.5, "collection", b"png"))
    assert data["labels"] == ["drawings", "painting"], data["labels"]
