"""ImageFolder test data written to temporary folders: classes told apart by colour, images by texture."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from tests.images import corrupt_jpeg, pattern

#: One dominant colour per class, far apart, so that a tiny model can learn them in a few steps.
CLASS_COLOURS = [(220, 40, 40), (40, 200, 60), (50, 60, 220), (230, 210, 40), (160, 40, 200)]


def class_image(cls: int, seed: int, size: tuple[int, int] = (80, 64)) -> Image.Image:
    """A picture of class ``cls``: its colour mixed with a seeded gradient-and-noise texture."""
    texture = np.asarray(pattern(size, seed=1000 * cls + seed), dtype=np.float32)
    colour = np.array(CLASS_COLOURS[cls % len(CLASS_COLOURS)], dtype=np.float32)
    return Image.fromarray((0.65 * colour + 0.35 * texture).astype(np.uint8), "RGB")


def make_image_folder(
    root: Path, classes: list[str], per_class: int, seed: int = 0, size: tuple[int, int] = (80, 64)
) -> Path:
    """``root/<class>/<n>.jpg`` for each class; returns ``root``."""
    for c, name in enumerate(classes):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            class_image(c, seed + i, size).save(folder / f"{seed + i:03d}.jpg", quality=92)
    return root


def make_train_val(root: Path, classes: list[str], per_class: int, same: bool = False) -> Path:
    """``root/train`` and ``root/val``; with ``same`` the val images are copies of the train images."""
    make_image_folder(root / "train", classes, per_class)
    if same:
        shutil.copytree(root / "train", root / "val")
    else:
        make_image_folder(root / "val", classes, max(1, per_class // 2), seed=100)
    return root


def add_unreadable(folder: Path) -> Path:
    """A file named like a JPEG that does not decode (must be counted, never dropped)."""
    path = folder / "broken.jpg"
    path.write_bytes(corrupt_jpeg())
    return path
