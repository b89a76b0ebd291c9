"""training.evaluate: metrics against a hand-checked confusion, folder checks, unreadable images counted."""

from __future__ import annotations

import json

import pytest

from handlers.model import load_checkpoint
from loadtests.harness import random_checkpoint
from tests.imagefolder import add_unreadable, make_image_folder
from training import evaluate, metrics
from training.data import scan_folder

REQUIRED_KEYS = {"accuracy", "macro_f1", "weighted_f1", "per_class", "n_images", "images_per_second"}


def test_metrics_match_a_hand_checked_confusion():
    # rows = true class, columns = predicted:   a: [2 1 0]   b: [0 1 1]   c: [1 0 3]
    y_true = [0, 0, 0, 1, 1, 2, 2, 2, 2]
    y_pred = [0, 0, 1, 1, 2, 2, 2, 2, 0]
    m = metrics.compute_metrics(y_true, y_pred, ["a", "b", "c"])
    assert m["confusion"] == [[2, 1, 0], [0, 1, 1], [1, 0, 3]], f"confusion wrong: {m['confusion']}"
    assert m["accuracy"] == pytest.approx(6 / 9), m["accuracy"]
    # a: P = 2/3 (2 of 3 predicted a), R = 2/3; b: P = 1/2, R = 1/2; c: P = 3/4, R = 3/4.
    expected = {"a": (2 / 3, 2 / 3, 3), "b": (1 / 2, 1 / 2, 2), "c": (3 / 4, 3 / 4, 4)}
    for label, (precision, recall, support) in expected.items():
        got = m["per_class"][label]
        assert got["precision"] == pytest.approx(precision), f"{label} precision {got}"
        assert got["recall"] == pytest.approx(recall), f"{label} recall {got}"
        assert got["f1"] == pytest.approx(precision), f"{label} F1 (P = R here) {got}"
        assert got["support"] == support, f"{label} support {got}"
    assert m["macro_f1"] == pytest.approx((2 / 3 + 1 / 2 + 3 / 4) / 3), m["macro_f1"]
    assert m["weighted_f1"] == pytest.approx((3 * 2 / 3 + 2 * 1 / 2 + 4 * 3 / 4) / 9), m["weighted_f1"]
    assert m["n_images"] == 9, m["n_images"]


def test_classes_absent_from_the_folder_do_not_drag_the_macro_average():
    m = metrics.compute_metrics([0, 0, 1, 1], [0, 0, 1, 1], ["a", "b", "c", "d"])
    assert m["macro_f1"] == 1.0, f"absent classes c, d were averaged in as F1 0: {m['macro_f1']}"
    assert set(m["per_class"]) == {"a", "b"}, m["per_class"]
    assert len(m["confusion"]) == 4, "the confusion matrix should cover all of the model's labels"


def test_a_class_folder_the_model_does_not_know_is_an_error(tmp_path):
    make_image_folder(tmp_path, ["painting", "tapestry"], per_class=1)
    with pytest.raises(ValueError, match="tapestry"):
        scan_folder(tmp_path, ["drawings", "painting", "sculpture"])


def test_checkpoint_evaluation_counts_unreadable_images(tmp_path, capsys):
    data = make_image_folder(tmp_path / "data", ["painting", "sculpture"], per_class=3)
    broken = add_unreadable(data / "painting")
    (data / "sculpture" / "notes.txt").write_text("not an image")
    checkpoint = random_checkpoint(tmp_path / "tiny.pt", "tiny_vgg")  # random weights: plumbing only
    out = tmp_path / "out" / "metrics.json"
    args = evaluate.get_args_parser().parse_args([str(data), "--checkpoint", str(checkpoint), "--json", str(out)])
    evaluate.main(args)
    metrics = json.loads(out.read_text())
    assert REQUIRED_KEYS <= set(metrics), f"JSON lacks {REQUIRED_KEYS - set(metrics)}"
    assert metrics["n_failed"] == 1 and metrics["failed"][0]["path"] == str(broken), metrics["failed"]
    assert metrics["n_images"] == 6, f"6 readable images should be scored, got {metrics['n_images']}"
    assert sum(c["support"] for c in metrics["per_class"].values()) == 6, metrics["per_class"]
    assert metrics["n_skipped"] == 1, "notes.txt should be listed as skipped"
    assert "NOT CLASSIFIED" in capsys.readouterr().out, "the unreadable image was not reported"
    assert (tmp_path / "out" / "metrics.confusion.png").is_file(), "no confusion-matrix PNG"


def test_evaluate_needs_a_checkpoint_or_a_url(tmp_path):
    with pytest.raises(SystemExit):
        evaluate.get_args_parser().parse_args([str(tmp_path)])


def test_reduced_precision_is_compared_with_fp32(tmp_path):
    ckpt = random_checkpoint(tmp_path / "m.pt", "tiny_vgg")
    data = make_image_folder(tmp_path / "data", list(load_checkpoint(ckpt)["labels"]), per_class=2)
    args = evaluate.get_args_parser().parse_args(
        [str(data), "--checkpoint", str(ckpt), "--precision", "bf16", "--json", str(tmp_path / "e.json")]
    )
    check = evaluate.run(args)["precision_check"]
    assert check["precision"] == "bf16 + channels_last" and check["n_images"] == 10, check
    assert 0 <= check["changed_predictions"] <= 10 and check["max_probability_difference"] < 0.05, check
