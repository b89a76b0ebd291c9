"""Collection tagging against a real TorchServe (tiny random-weight model: structure and behaviour, not accuracy)."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from PIL import Image, ImageStat

from deploy import ROOT
from tagging.tag_collection import get_args_parser, run
from tests.images import ART5_LABELS, corrupt_jpeg, jpeg

pytestmark = pytest.mark.integration

REVIEW_BELOW = 0.3
CSV_COLUMNS = {
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
}


def requests_total(server) -> float:
    """The server's own count of inference requests (``ts_inference_requests_total``, summed over label sets)."""
    text = requests.get(server.metrics_url, timeout=10).text
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("ts_inference_requests_total")
    )


def make_collection(root: Path) -> dict[str, int]:
    """drawings/ and painting/ (folder names that are labels), misc/ (not a label) with a corrupt JPEG, a text file."""
    for folder, n in (("drawings", 3), ("painting", 3), ("misc/deeper", 2)):
        (root / folder).mkdir(parents=True)
        for i in range(n):
            (root / folder / f"{i}.jpg").write_bytes(jpeg((96 + 8 * i, 64), seed=10 * len(folder) + i))
    (root / "misc" / "broken.jpg").write_bytes(corrupt_jpeg())
    (root / "misc" / "notes.txt").write_text("not an image")
    return {"images": 9, "labelled": 6}


def tag(source: Path, out: Path, server, checkpoint: Path, *extra: str) -> dict:
    argv = [str(source), "--url", server.predict_url, "--out", str(out), "--review-below", str(REVIEW_BELOW)]
    return run(get_args_parser().parse_args([*argv, "--labels-from", str(checkpoint), "--concurrency", "4", *extra]))


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def first_run(ts_server, tiny_checkpoint, tmp_path_factory):
    root = tmp_path_factory.mktemp("collection")
    expected = make_collection(root / "images")
    out = root / "out"
    before = requests_total(ts_server)
    summary = tag(root / "images", out, ts_server, tiny_checkpoint)
    return root, out, expected, summary, requests_total(ts_server) - before


def test_tagging_writes_jsonl_csv_and_report(first_run):
    root, out, expected, summary, requests_seen = first_run
    assert summary["images"] == expected["images"] and summary["sent"] == expected["images"], summary
    assert requests_seen == expected["images"], f"the server counted {requests_seen} requests for 9 images"
    records = read_jsonl(out / "tags.jsonl")
    assert len(records) == expected["images"], f"{len(records)} JSONL records for 9 images"
    for r in records:
        if r["error"] is None:
            assert r["label"] in ART5_LABELS and r["top_k"][0]["label"] == r["label"], f"bad record {r}"
            assert r["model_version"] and r["status"] == 200, f"record lacks version/status: {r}"
            assert r["review"] == (r["probability"] < REVIEW_BELOW), f"review flag wrong for {r}"
    with (out / "tags.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert CSV_COLUMNS <= set(rows[0]), f"CSV columns {list(rows[0])}"
    assert len(rows) == expected["images"], f"{len(rows)} CSV rows for 9 images"
    truth = {Path(row["path"]).parent.name for row in rows if row["true_label"]}
    assert truth == {"drawings", "painting"}, f"true labels taken from folders {truth}: only label-named ones count"
    assert sum(bool(row["true_label"]) for row in rows) == expected["labelled"], "one true label per labelled image"
    html = (out / "report.html").read_text(encoding="utf-8")
    assert html.count('<img loading="lazy" src="data:image/jpeg;base64,') == expected["images"] - 1, (
        "one thumbnail per readable image"
    )
    assert "data:image/png;base64," in html and (out / "confidence.png").stat().st_size > 0, "histogram missing"
    assert "Precision and recall on the 6 images" in html, "per-class metrics for the labelled subset missing"
    assert "http://" not in html and "https://" not in html, "the report must not load anything from outside"


def test_corrupt_image_is_recorded_and_does_not_stop_the_run(first_run):
    root, out, expected, summary, _ = first_run
    records = {r["path"]: r for r in read_jsonl(out / "tags.jsonl")}
    broken = records[str((root / "images" / "misc" / "broken.jpg").resolve())]
    assert broken["status"] == 400 and broken["error"] and broken["label"] is None, f"broken image: {broken}"
    assert summary["failed"] == 1, f"summary: {summary}"
    assert sum(r["error"] is None for r in records.values()) == expected["images"] - 1, "the others were tagged"
    assert "Not tagged (1)" in (out / "report.html").read_text(encoding="utf-8"), "failure not listed in the report"


def test_rerun_skips_tagged_images_and_retries_failures(first_run, ts_server, tiny_checkpoint):
    root, out, expected, _, _ = first_run
    resumed = root / "resumed"
    shutil.copytree(out, resumed)
    before = requests_total(ts_server)
    summary = tag(root / "images", resumed, ts_server, tiny_checkpoint)
    seen = requests_total(ts_server) - before
    # One tagged image is sent to learn the served model_version, plus the one that failed.
    assert summary["sent"] == 2 and summary["skipped"] == expected["images"] - 2, f"summary: {summary}"
    assert seen == 2, f"the server counted {seen} requests on a rerun with everything but one image tagged"
    assert len(read_jsonl(resumed / "tags.jsonl")) == expected["images"] + 2, "a rerun appends, never rewrites"


def test_rerun_retags_images_of_another_model_version(first_run, ts_server, tiny_checkpoint):
    root, out, expected, _, _ = first_run
    stale = root / "stale"
    stale.mkdir()
    lines = read_jsonl(out / "tags.jsonl")
    for r in lines:
        if r["error"] is None:
            r["model_version"] = "an-older-version"
    # A crash mid-write leaves half a line at the end: it must be ignored, not stop the rerun.
    text = "".join(json.dumps(r) + "\n" for r in lines) + '{"path": "half a li'
    (stale / "tags.jsonl").write_text(text, encoding="utf-8")
    summary = tag(root / "images", stale, ts_server, tiny_checkpoint)
    assert summary["sent"] == expected["images"], f"every image is stale or failed, yet: {summary}"
    lines = (stale / "tags.jsonl").read_text(encoding="utf-8").splitlines()
    n = expected["images"]
    assert lines[n] == '{"path": "half a li', f"the torn line must stay apart from new records: {lines[n][:80]}"
    latest = {r["path"]: r for r in map(json.loads, lines[n + 1 :])}
    assert len(latest) == n, f"{len(latest)} of {n} images answered again"
    versions = {r["model_version"] for r in latest.values() if r["error"] is None}
    assert versions == {summary["model_version"]}, f"versions after the rerun: {versions}"


def test_report_only_sends_nothing_and_applies_a_new_threshold(first_run, ts_server, tiny_checkpoint):
    root, out, expected, _, _ = first_run
    again = root / "report-only"
    shutil.copytree(out, again)
    before = requests_total(ts_server)
    summary = tag(root / "images", again, ts_server, tiny_checkpoint, "--report-only", "--review-below", "1.0")
    assert summary["sent"] == 0 and requests_total(ts_server) == before, f"--report-only sent requests: {summary}"
    assert summary["review"] == expected["images"] - 1, f"every tagged image is below 1.0: {summary}"
    assert len(read_jsonl(again / "tags.jsonl")) == expected["images"], "--report-only must not append records"


def test_csv_input_with_true_labels_and_a_missing_file(ts_server, tiny_checkpoint, tmp_path):
    (tmp_path / "scans").mkdir()
    for i in range(2):
        (tmp_path / "scans" / f"{i}.jpg").write_bytes(jpeg(seed=50 + i))
    listing = tmp_path / "list.csv"
    listing.write_text("path,true_label\nscans/0.jpg,sculpture\nscans/1.jpg,\nscans/gone.jpg,painting\n")
    # Through the documented command line, as `make tag` runs it.
    argv = [str(listing), "--url", ts_server.predict_url, "--out", str(tmp_path / "out"), "--concurrency", "2"]
    proc = subprocess.run(
        [sys.executable, "-m", "tagging.tag_collection", *argv, "--labels-from", str(tiny_checkpoint)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"tag_collection failed: {proc.stderr[-2000:]}"
    summary = proc.stdout.strip().splitlines()[-1]
    assert summary.startswith("sent 3 images") and "1 of 3 not tagged" in summary, f"summary line: {summary}"
    assert "3/3" in proc.stderr and "img/s" in proc.stderr, (
        f"no progress bar with a rate on stderr: {proc.stderr[-500:]}"
    )
    with (tmp_path / "out" / "tags.csv").open(newline="") as f:
        rows = {Path(row["path"]).name: row for row in csv.DictReader(f)}
    assert rows["gone.jpg"]["error"].startswith("cannot read file"), f"missing file: {rows['gone.jpg']}"
    assert rows["0.jpg"]["true_label"] == "sculpture" and rows["1.jpg"]["true_label"] == "", f"true labels: {rows}"
    html = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    assert "Precision and recall on the 1 image with" in html, "metrics must cover only tagged images with a true label"


def test_report_renders_in_headless_chromium(first_run, tmp_path):
    _, out, _, _, _ = first_run
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed: `make system-deps` installs the Debian package")
    shot = tmp_path / "report.png"
    cmd = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        f"--screenshot={shot}",
        "--window-size=1280,2000",
        (out / "report.html").resolve().as_uri(),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and shot.exists(), f"chromium failed ({proc.returncode}): {proc.stderr[-2000:]}"
    with Image.open(shot) as img:
        assert img.size == (1280, 2000), f"screenshot size {img.size}"
        spread = ImageStat.Stat(img.convert("L")).stddev[0]
    assert spread > 10, f"the screenshot is nearly uniform (stddev {spread:.1f}): the report did not render"


def test_tagging_flags_by_the_served_models_review_policy(tiny_checkpoint, tmp_path):
    """A checkpoint with a calibration entry, packed and served by a real TorchServe: its answers carry the policy,
    and make tag's default rule is that policy (a run-level --review-below still overrides it)."""
    import torch

    from deploy.archive import build_archive
    from tests.conftest import run_server

    ckpt = torch.load(tiny_checkpoint, weights_only=True)
    ckpt["state_dict"]["classifier.6.weight"] *= 1e5  # random logits are ~1e-5: make the answers differ
    ckpt["calibration"] = {"temperature": 3.0, "review_policy": {"review_below": 0.6}}
    calibrated = tmp_path / "calibrated.pt"
    torch.save(ckpt, calibrated)
    mar = build_archive(calibrated, tmp_path / "store")
    make_collection(tmp_path / "images")
    server_gen = run_server(mar, tmp_path / "run")
    server = next(server_gen)
    try:
        argv = [str(tmp_path / "images"), "--url", server.predict_url, "--out", str(tmp_path / "out")]
        summary = run(get_args_parser().parse_args([*argv, "--labels-from", str(calibrated)]))
        records = [r for r in read_jsonl(tmp_path / "out" / "tags.jsonl") if r.get("label")]
        assert records and all(r["policy_review_below"] == 0.6 for r in records), f"answers: {records[:2]}"
        assert all(r["review"] == (r["probability"] < 0.6) for r in records), "review must follow the policy"
        assert "review policy" in summary["review_rule"], f"the run must record its rule: {summary['review_rule']}"
        report = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
        assert 'id="review-rule"' in report and "risk-coverage" in report, "the report must show the rule and curve"
        again = run(get_args_parser().parse_args([*argv, "--labels-from", str(calibrated), "--review-below", "0.0"]))
        assert again["review"] == 0 and again["review_rule"] == "--review-below 0", f"override ignored: {again}"
        # --max-error: the card of the answering version names a bound per threshold; 5 % first holds at 0.7
        grid = [{"review_below": t, "upper_bound": 0.2 - t / 5} for t in (0.5, 0.6, 0.7, 0.8)]  # 0.1 ... 0.04
        card = tmp_path / "card.json"
        policy = {"method": "Bonferroni over the grid", "grid": grid, "max_error": 0.02, "confidence": 0.95}
        card.write_text(json.dumps({"version": records[0]["model_version"], "calibration": {"review_policy": policy}}))
        argv += ["--labels-from", str(calibrated), "--report-only", "--card", str(card), "--max-error"]
        looser = run(get_args_parser().parse_args([*argv, "0.07"]))
        assert looser["review_rule"].startswith("--max-error 0.07: below 0.7"), looser["review_rule"]
        assert looser["review"] == sum(r["probability"] < 0.7 for r in records), looser
        stricter = run(get_args_parser().parse_args([*argv, "0.01"]))
        assert stricter["review"] == len(records) and "every tag to review" in stricter["review_rule"], stricter
    finally:
        server_gen.close()
