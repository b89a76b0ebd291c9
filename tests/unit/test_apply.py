"""tagging.apply: the curator's corrections merged into a tagging run's output, and refused when they do not match."""

from __future__ import annotations

import csv
import json
from argparse import Namespace
from pathlib import Path

import pytest

from tagging import apply
from tagging.records import write_csv
from tests.images import ART5_LABELS, jpeg
from training.data import read_labelled_csv

VERSION = "tiny_vgg-0123456789ab"


def tag_dir(tmp_path: Path) -> tuple[Path, list[str]]:
    """A tag_collection output: three tagged images and one that failed, tags.csv and labels.json."""
    images = tmp_path / "images"
    images.mkdir()
    paths = []
    for i in range(4):
        (images / f"{i}.jpg").write_bytes(jpeg(seed=i))
        paths.append(str((images / f"{i}.jpg").resolve()))
    records = [
        {"path": paths[0], "label": "painting", "probability": 0.41, "model_version": VERSION, "review": True},
        {"path": paths[1], "label": "drawings", "probability": 0.35, "model_version": VERSION, "review": True},
        {"path": paths[2], "label": "sculpture", "probability": 0.93, "model_version": VERSION, "review": False},
        {"path": paths[3], "label": None, "probability": None, "status": 400, "error": "cannot decode"},
    ]
    out = tmp_path / "tags"
    out.mkdir()
    write_csv(out / "tags.csv", records)
    (out / "labels.json").write_text(json.dumps({"labels": ART5_LABELS}))
    return out, paths


def write_corrections(path: Path, rows: list[list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(apply.CORRECTION_FIELDS)
        for row in rows:
            writer.writerow(row + ["0.5", VERSION, "2026-12-03T08:00:00.000Z"][len(row) - 4 :])
    return path


def run_apply(out: Path, corrections: Path) -> dict:
    return apply.run(Namespace(tag_dir=str(out), corrections=str(corrections), out=None, labels_from=None))


def read_final(out: Path) -> list[dict]:
    with (out / "final_tags.csv").open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_decisions_are_merged_with_a_source_column(tmp_path):
    out, paths = tag_dir(tmp_path)
    corrections = write_corrections(
        tmp_path / "corrections.csv",
        [[paths[0], "painting", "accepted", "painting"], [paths[1], "engraving", "corrected", "drawings"]],
    )
    counts = run_apply(out, corrections)
    rows = read_final(out)
    assert list(rows[0]) == apply.FINAL_FIELDS, f"final_tags.csv columns: {list(rows[0])}"
    got = [(Path(r["path"]).name, r["label"], r["source"], r["decision"], r["model_label"]) for r in rows]
    assert got == [
        ("0.jpg", "painting", "curator", "accepted", "painting"),
        ("1.jpg", "engraving", "curator", "corrected", "drawings"),
        ("2.jpg", "sculpture", "model", "", "sculpture"),
        ("3.jpg", "", "untagged", "", ""),
    ], f"final tags: {got}"
    assert rows[1]["reviewed_at"] == "2026-12-03T08:00:00.000Z" and rows[2]["reviewed_at"] == "", rows
    assert rows[2]["model_probability"] == "0.93" and rows[2]["model_version"] == VERSION, rows[2]
    assert counts == {"out": str(out / "final_tags.csv"), "curator": 2, "model": 1, "untagged": 1, "corrected": 1}


def test_final_tags_train_on_the_curators_rows_only(tmp_path):
    out, paths = tag_dir(tmp_path)
    corrections = write_corrections(
        tmp_path / "corrections.csv",
        [[paths[0], "painting", "accepted", "painting"], [paths[1], "engraving", "corrected", "drawings"]],
    )
    run_apply(out, corrections)
    samples, record = read_labelled_csv(out / "final_tags.csv", ART5_LABELS)
    assert samples == [(paths[0], ART5_LABELS.index("painting")), (paths[1], ART5_LABELS.index("engraving"))], (
        f"--extra-train must add exactly the curator's rows with their labels: {samples}"
    )
    assert record["rows"] == 4 and record["added"] == 2 and record["not_curator"] == 2, f"record: {record}"


@pytest.mark.parametrize(
    ("row", "named"),
    [
        (["/nowhere/else.jpg", "painting", "corrected", "drawings"], ["paths are not in", "/nowhere/else.jpg"]),
        (["{0}", "frescoes", "corrected", "painting"], ["labels are not the model's labels", "'frescoes'"]),
        (["{0}", "painting", "maybe", "painting"], ["decisions are not one of", "'maybe'"]),
        (["{0}", "engraving", "accepted", "painting"], ["accepted as 'engraving', the model said 'painting'"]),
    ],
)
def test_mismatched_corrections_are_refused_naming_the_rows(tmp_path, row, named):
    out, paths = tag_dir(tmp_path)
    row = [row[0].format(paths[0]), *row[1:]]
    corrections = write_corrections(tmp_path / "corrections.csv", [[paths[1], "drawings", "accepted", "drawings"], row])
    with pytest.raises(SystemExit) as refused:
        apply.main(apply.get_args_parser().parse_args([str(out), str(corrections)]))
    message = str(refused.value)
    assert message.startswith("error: ") and "line 3" in message, f"the message must name the row: {message}"
    for text in named:
        assert text in message, f"{text!r} missing from the refusal: {message}"
    assert not (out / "final_tags.csv").exists(), "a refused file must not write final tags"


def test_a_path_decided_twice_and_many_bad_rows_are_named(tmp_path):
    out, paths = tag_dir(tmp_path)
    rows = [[paths[1], "drawings", "accepted", "drawings"], [paths[1], "painting", "corrected", "drawings"]]
    rows += [[f"/gone/{i}.jpg", "painting", "corrected", "drawings"] for i in range(7)]
    corrections = write_corrections(tmp_path / "corrections.csv", rows)
    with pytest.raises(ValueError) as refused:
        run_apply(out, corrections)
    message = str(refused.value)
    assert f"1 paths are decided more than once: line 3: {paths[1]}" in message, message
    assert "7 paths are not in the tagging output" in message and "/gone/0.jpg" in message, message
    assert "and 2 more" in message and "/gone/6.jpg" not in message, f"long lists are cut at 5: {message}"


def test_a_run_without_labels_json_says_how_to_get_it(tmp_path):
    out, paths = tag_dir(tmp_path)
    (out / "labels.json").unlink()
    corrections = write_corrections(tmp_path / "c.csv", [[paths[0], "painting", "accepted", "painting"]])
    with pytest.raises(FileNotFoundError, match="--report-only writes it"):
        run_apply(out, corrections)
