"""The curator's loop against a real TorchServe (tiny random-weight model): tag with --explain-review, review in
the real report in headless Chromium (keyboard, reload, export), apply the export, read it as training input."""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

from deploy import ROOT
from tagging.tag_collection import get_args_parser, run
from tests.images import ART5_LABELS, corrupt_jpeg, jpeg
from training.data import read_labelled_csv

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
REVIEW_BELOW = 0.3
ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def tagged(ts_server, tiny_checkpoint, tmp_path_factory):
    """drawings/ and painting/ (3 images each, so true labels are known) and a corrupt JPEG, tagged with maps."""
    root = tmp_path_factory.mktemp("review")
    for n, folder in enumerate(("drawings", "painting")):
        (root / "images" / folder).mkdir(parents=True)
        for i in range(3):
            (root / "images" / folder / f"{i}.jpg").write_bytes(jpeg((96 + 8 * i, 72), seed=30 + 10 * n + i))
    (root / "images" / "broken.jpg").write_bytes(corrupt_jpeg())
    argv = [str(root / "images"), "--url", ts_server.predict_url, "--out", str(root / "out"), "--concurrency", "4"]
    argv += ["--review-below", str(REVIEW_BELOW), "--labels-from", str(tiny_checkpoint), "--explain-review"]
    summary = run(get_args_parser().parse_args(argv))
    return root, summary, argv


def test_explain_review_stores_maps_for_the_images_under_review(tagged):
    root, summary, argv = tagged
    latest = {r["path"]: r for r in read_jsonl(root / "out" / "tags.jsonl")}
    review = [r for r in latest.values() if r["review"]]
    assert review and summary["explained"] == len(review) and summary["explain_failed"] == 0, f"summary: {summary}"
    for r in latest.values():
        explanation = r.get("explanation")
        if not r["review"]:
            assert explanation is None, f"an image not under review got a map: {r['path']}"
            continue
        assert explanation["explains"] == r["label"] and explanation["model_version"] == r["model_version"], r
        cam = explanation["cam"]
        assert len(cam) == 4 and all(len(row) == 4 for row in cam), f"tiny_vgg at 64 px has a 4x4 map: {cam}"
        assert all(0.0 <= v <= 1.0 for row in cam for v in row), f"map values outside [0, 1]: {cam}"
    html = (root / "out" / "report.html").read_text(encoding="utf-8")
    assert html.count('<img class="cam" src="data:image/png;base64,') == len(review), "one overlay per map"
    again = run(get_args_parser().parse_args([*argv[:4], str(root / "again"), *argv[5:]]))
    assert again["explained"] == len(review), f"a fresh --out explains again: {again}"
    rerun = run(get_args_parser().parse_args(argv))
    assert rerun["explained"] == 0 and rerun["sent"] == 2, f"a rerun must not explain the same images again: {rerun}"


def launch(playwright, profile: Path):
    """Debian's Chromium with a profile folder, so closing and relaunching keeps localStorage as a browser does."""
    return playwright.chromium.launch_persistent_context(
        str(profile), executable_path=str(CHROMIUM), args=["--no-sandbox"], accept_downloads=True,
        viewport={"width": 1280, "height": 900},
    )  # fmt: skip


def open_report(context, report: Path, errors: list[str]):
    page = context.new_page()
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(report.as_uri())
    return page


def test_review_in_chromium_survives_a_restart_and_exports_applies_and_trains(tagged, tmp_path):
    if not CHROMIUM.exists():
        pytest.skip("chromium is not installed: `make system-deps` installs the Debian package")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed: pip install '.[dev]'")
    root, _, _ = tagged
    report, errors = root / "out" / "report.html", []
    started = datetime.now(timezone.utc)
    with sync_api.sync_playwright() as p:
        context = launch(p, tmp_path / "profile")
        page = open_report(context, report, errors)
        data = page.evaluate("JSON.parse(document.getElementById('review-data').textContent)")
        items, figures = data["items"], page.locator("figure.item")
        assert data["labels"] == ART5_LABELS and len(items) == 6, f"page data: {data['labels']}, {len(items)} items"
        correction = next(label for label in ART5_LABELS if label != items[0]["label"])
        figures.nth(0).focus()
        page.keyboard.press(str(ART5_LABELS.index(correction) + 1))  # corrects the first, moves to the second
        page.keyboard.press("a")  # accepts the second's model label, moves to the third
        page.keyboard.press("ArrowLeft")
        focused = page.evaluate("document.activeElement.dataset.i")
        assert focused == "1", f"ArrowLeft from the third image must focus the second, focused {focused}"
        context.close()

        context = launch(p, tmp_path / "profile")  # closed and reopened: the decisions are still there
        page = open_report(context, report, errors)
        figures = page.locator("figure.item")
        shown = [figures.nth(i).locator(".decision").text_content() for i in range(3)]
        assert shown == [f"corrected to {correction}", f"accepted: {items[1]['label']}", ""], (
            f"after reopening: {shown}"
        )
        assert page.locator("#review-count").text_content().startswith("reviewed 2 / 6, left 4"), "counter"
        figures.nth(2).locator("button.accept").click()  # the mouse, then the undo key
        assert figures.nth(2).locator(".decision").text_content() == f"accepted: {items[2]['label']}", "click"
        assert page.locator("#review-count").text_content().startswith("reviewed 3 / 6"), "counter after a click"
        page.keyboard.press("u")
        assert figures.nth(2).locator(".decision").text_content() == "", "u must undo the focused image's decision"

        page.select_option("#filter-class", items[0]["label"])
        n_class = sum(item["label"] == items[0]["label"] for item in items)
        assert page.locator("figure.item:visible").count() == n_class, "the class filter must show that class only"
        page.select_option("#filter-class", "")
        page.select_option("#filter-status", "disagree")
        n_disagree = sum(bool(item["true_label"]) and item["true_label"] != item["label"] for item in items)
        assert page.locator("figure.item:visible").count() == n_disagree, "the disagreement filter is wrong"
        page.select_option("#filter-status", "all")

        with page.expect_download() as download:
            page.click("#export")
        assert download.value.suggested_filename == "corrections.csv", download.value.suggested_filename
        exported = tmp_path / "corrections.csv"
        download.value.save_as(exported)
        context.close()
    assert not errors, f"the page raised: {errors}"

    rows = list(csv.reader(io.StringIO(exported.read_text(encoding="utf-8"))))
    version = items[0]["model_version"]
    expected = sorted(
        [
            [items[0]["path"], correction, "corrected", items[0]["label"], str(items[0]["probability"]), version],
            [items[1]["path"], items[1]["label"], "accepted", items[1]["label"], str(items[1]["probability"]), version],
        ]
    )
    assert rows[0] == data["columns"] and [row[:6] for row in rows[1:]] == expected, f"exported rows: {rows}"
    for row in rows[1:]:
        assert ISO_UTC.match(row[6]) and started <= datetime.fromisoformat(row[6].replace("Z", "+00:00")), row[6]

    proc = subprocess.run(
        [sys.executable, "-m", "tagging.apply", str(root / "out"), str(exported)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, f"tagging.apply failed: {proc.stderr[-2000:]}"
    with (root / "out" / "final_tags.csv").open(newline="", encoding="utf-8") as f:
        final = {row["path"]: row for row in csv.DictReader(f)}
    assert len(final) == 7, f"one final tag per image of the run: {len(final)}"
    assert (final[items[0]["path"]]["label"], final[items[0]["path"]]["source"]) == (correction, "curator"), final
    assert final[items[1]["path"]]["source"] == "curator", final[items[1]["path"]]
    sources = sorted(row["source"] for row in final.values())
    assert sources == ["curator"] * 2 + ["model"] * 4 + ["untagged"], f"sources: {sources}"

    samples, record = read_labelled_csv(root / "out" / "final_tags.csv", ART5_LABELS)
    assert samples == sorted(
        [(items[0]["path"], ART5_LABELS.index(correction)), (items[1]["path"], ART5_LABELS.index(items[1]["label"]))]
    ), f"--extra-train must take the two curator rows: {samples}"
    assert record["not_curator"] == 5, f"the model's own tags must be skipped: {record}"
