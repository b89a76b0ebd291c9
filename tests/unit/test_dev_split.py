"""What the grown data set needs from training: a dev split an older model never trained on (--dev-avoid),
class-balanced loss for teacher and student, and the teacher's plain crop-and-flip views."""

from __future__ import annotations

import argparse

import pytest
import torch

from tests.imagefolder import make_image_folder
from training import schedule
from training.data import content_digests, dev_splits, split_dev


def samples(root, per_class=(20, 10, 30)):
    classes = ["a", "b", "c"]
    for name, n in zip(classes, per_class, strict=True):
        make_image_folder(root / "x", [name], n, seed=100 * len(name) + n)
    out = []
    for c, name in enumerate(classes):
        out += [(str(p), c) for p in sorted((root / "x" / name).glob("*.jpg"))]
    return out


def test_dev_avoids_the_images_an_older_model_trained_on(tmp_path):
    data = samples(tmp_path)
    old_train = data[::2]  # an older model trained on every other image
    avoid = set(content_digests(old_train))
    train, dev = split_dev(data, 0.2, seed=0, avoid=avoid)
    assert not avoid & set(content_digests(dev)), "dev holds images the older model trained on"
    assert sorted(train + dev) == sorted(data), "every image is in train or dev, once"
    per_class = [sum(1 for _, t in dev if t == c) for c in range(3)]
    assert per_class == [4, 2, 6], f"dev keeps the classes' proportions (20 %): {per_class}"
    again = split_dev(data, 0.2, seed=0, avoid=avoid)
    assert again == (train, dev), "the same arguments must give the same split"


def test_dev_avoid_says_when_too_few_images_are_left(tmp_path):
    data = samples(tmp_path, (10, 10, 10))
    with pytest.raises(ValueError, match="outside the avoided"):
        split_dev(data, 0.5, seed=0, avoid=set(content_digests(data[:8])))


def test_dev_avoid_reads_a_checkpoint_record_and_refuses_one_without(tmp_path):
    make_image_folder(tmp_path / "d" / "train", ["a", "b"], 10)
    make_image_folder(tmp_path / "d" / "val", ["a", "b"], 2, seed=50)
    splits, _, _ = dev_splits(tmp_path / "d", 0.2, 0)
    seen = splits.train[:6]
    torch.save({"training": {"train_images_sha256_16": content_digests(seen)}}, tmp_path / "old.pt")
    _, train, dev = dev_splits(tmp_path / "d", 0.2, 0, avoid=[tmp_path / "old.pt"])
    assert not set(seen) & set(dev), f"dev {dev} overlaps the old model's training images"
    torch.save({"training": {}}, tmp_path / "bare.pt")
    with pytest.raises(SystemExit, match="does not list"):
        dev_splits(tmp_path / "d", 0.2, 0, avoid=[tmp_path / "bare.pt"])


def test_balanced_class_weights_give_each_class_the_same_total_weight():
    args = argparse.Namespace(class_weights="balanced", label_smoothing=0.0)
    train = [("x", 0)] * 30 + [("y", 1)] * 10
    criterion = schedule.make_criterion(args, train, ["a", "b"], torch.device("cpu"))
    assert torch.allclose(criterion.weight * torch.tensor([30.0, 10.0]), torch.tensor([20.0, 20.0])), criterion.weight
    plain = schedule.make_criterion(
        argparse.Namespace(class_weights="none", label_smoothing=0.1), train, ["a", "b"], "cpu"
    )
    assert plain.weight is None and plain.label_smoothing == 0.1


def test_teacher_crop_flip_views_have_no_tilt_or_colour_change():
    from training.teacher import get_args_parser, teacher_views

    plain = teacher_views(get_args_parser().parse_args(["--views", "crop-flip", "--min-scale", "0.5"]))
    assert plain.flip and plain.min_scale == 0.5 and not (plain.tilt_p or plain.brightness or plain.contrast), plain
    art = teacher_views(get_args_parser().parse_args([]))
    assert art.tilt_p and art.brightness, f"the default stays the student's augmentation: {art}"
