"""training.compare: the bootstrap's macro-F1 is compute_metrics', the interval resolves only real differences."""

from __future__ import annotations

import json

import numpy as np
import pytest

from loadtests.harness import LABELS, random_checkpoint
from tests.imagefolder import make_train_val
from training import compare
from training.data import find_splits, split_dev
from training.metrics import compute_metrics


def test_row_macro_f1_is_compute_metrics_macro_f1():
    rng = np.random.default_rng(1)
    for _ in range(20):
        n, k = int(rng.integers(5, 40)), int(rng.integers(2, 6))
        y = rng.integers(0, k, n)
        p = np.where(rng.random(n) < 0.6, y, rng.integers(0, k + 1, n))  # k+1: a class absent from the truth
        expected = compute_metrics(y.tolist(), p.tolist(), [str(i) for i in range(k + 1)])["macro_f1"]
        assert compare.macro_f1_rows(y[None], p[None], k + 1)[0] == pytest.approx(expected), (y, p)


def test_identical_answers_are_no_difference():
    y = np.arange(300) % 5
    p = np.where(np.arange(300) % 7 == 0, (y + 1) % 5, y)
    r = compare.paired_bootstrap(y, p, p.copy(), 5, resamples=500)
    assert r["difference"] == 0 and r["interval_95"] == [0.0, 0.0] and r["disagreements"] == 0, r
    assert not r["resolved"] and r["share_b_ahead"] == 0.0, r


def test_a_large_gain_is_resolved_and_one_image_is_not():
    y = np.arange(300) % 5
    half_wrong = np.where(np.arange(300) % 2 == 0, (y + 1) % 5, y)
    r = compare.paired_bootstrap(y, half_wrong, y, 5, resamples=500)
    assert r["macro_f1_b"] == 1.0 and r["macro_f1_a"] < 0.6 and r["disagreements"] == 150, r
    assert r["resolved"] and r["interval_95"][0] > 0.3 and r["share_b_ahead"] == 1.0, r
    one_better = half_wrong.copy()
    one_better[0] = y[0]
    r = compare.paired_bootstrap(y, half_wrong, one_better, 5, resamples=500)
    assert 0 < r["difference"] < 0.01 and r["disagreements"] == 1, r
    assert not r["resolved"] and r["interval_95"][0] <= 0 < r["interval_95"][1], r
    reverse = compare.paired_bootstrap(y, one_better, half_wrong, 5, resamples=500)
    assert reverse["difference"] == pytest.approx(-r["difference"]), "B - A, not A - B"


def test_cli_compares_two_checkpoints_on_the_dev_split(tmp_path, capsys):
    data = make_train_val(tmp_path / "data", LABELS, per_class=8)
    a = random_checkpoint(tmp_path / "a.pt", "tiny_vgg", seed=0)  # random weights: plumbing only
    b = random_checkpoint(tmp_path / "b.pt", "tiny_vgg", seed=1)
    out = tmp_path / "compare.json"
    args = [str(a), str(b), "--data", str(data), "--dev-fraction", "0.25", "--resamples", "200", "--json", str(out)]
    compare.main(compare.get_args_parser().parse_args(args))
    r = json.loads(out.read_text())
    dev = split_dev(find_splits(data).train, 0.25, 0)[1]
    assert r["split"] == "dev" and r["images"] == len(dev) == 10 and r["unreadable"] == 0, r
    assert r["metrics_a"]["macro_f1"] == pytest.approx(r["macro_f1_a"]), "the same images, the same metric"
    assert r["metrics_b"]["macro_f1"] == pytest.approx(r["macro_f1_b"])
    assert r["interval_95"][0] <= r["difference"] <= r["interval_95"][1], r
    assert "dev (10 images" in capsys.readouterr().out

    val = compare.compare(compare.get_args_parser().parse_args([*args[:2], "--data", str(data), "--split", "val"]))
    assert val["images"] == len(find_splits(data).val) == 20, val["images"]


def test_labels_that_do_not_match_the_data_are_refused(tmp_path):
    data = make_train_val(tmp_path / "data", ["prints", "statues"], per_class=4)
    a = random_checkpoint(tmp_path / "a.pt", "tiny_vgg")
    with pytest.raises(SystemExit, match="labels differ"):
        compare.main(compare.get_args_parser().parse_args([str(a), str(a), "--data", str(data)]))
