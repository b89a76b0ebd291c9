"""ImageFolder-style data for training and evaluation: find the images, split them, load them.

A data set is a folder of class folders (``<root>/<class>/<image>``), or one holding ``train/`` and
``val/`` folders of that shape. Labels are the class folder names, sorted, so another collection (say
nine cultures) trains with the same command.

Evaluation images go through exactly the serving path (``handlers.preprocessing.preprocess_bytes``);
training images are decoded the same way, then augmented as photos of artworks are likely to vary.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from sklearn.model_selection import train_test_split
from torchvision.transforms import v2

from handlers.errors import InputError
from handlers.preprocessing import Limits, PreprocessConfig, decode_image, image_to_uint8, preprocess_bytes

#: File name endings treated as images (anything else in a class folder is listed as skipped).
#: Formats the server refuses (HEIC, AVIF, SVG) are included so that evaluation counts them as unreadable.
IMAGE_EXTENSIONS = (
    ".jpg",
    ".jpeg",
    ".jpe",
    ".png",
    ".webp",
    ".bmp",
    ".tif",
    ".tiff",
    ".gif",
    ".mpo",
    ".heic",
    ".heif",
    ".avif",
    ".svg",
)

Sample = tuple[str, int]  # (path, class index)


@dataclass
class FolderScan:
    """What an ImageFolder directory holds: classes, images as (path, class index), skipped files."""

    root: Path
    classes: list[str]
    samples: list[Sample]
    skipped: list[str]


def class_folders(root: Path) -> list[str]:
    """Sorted names of the non-hidden sub-folders of ``root``; an error that says what is expected if none."""
    if not root.is_dir():
        raise FileNotFoundError(f"data folder {root} does not exist")
    names = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not names:
        raise ValueError(f"{root} has no class folders: expected {root}/<class>/<image files>")
    return names


def scan_folder(root: str | Path, labels: Sequence[str] | None = None) -> FolderScan:
    """List ``root/<class>/*`` images; class indices follow ``labels`` when given, else sorted folder names.

    A class folder that is not in ``labels`` is an error naming it: the model cannot predict that class.
    """
    root = Path(root)
    folders = class_folders(root)
    classes = list(labels) if labels is not None else folders
    unknown = [name for name in folders if name not in classes]
    if unknown:
        raise ValueError(f"{root}: class folder(s) {unknown} are not among the model's labels {classes}")
    samples, skipped = [], []
    for name in folders:
        for path in sorted((root / name).rglob("*")):
            if not path.is_file() or path.name.startswith("."):
                continue
            if path.suffix.lower() in IMAGE_EXTENSIONS:
                samples.append((str(path), classes.index(name)))
            else:
                skipped.append(str(path))
    if not samples:
        raise ValueError(f"{root} holds no image files ({', '.join(IMAGE_EXTENSIONS[:5])}, ...) in its class folders")
    return FolderScan(root, classes, samples, skipped)


@dataclass
class Splits:
    classes: list[str]
    train: list[Sample]
    val: list[Sample]
    source: str  # how the split was made, for the run record and the model card


def limit_per_class(samples: list[Sample], limit: int | None, seed: int) -> list[Sample]:
    """At most ``limit`` samples of each class, chosen with a fixed seed (all when ``limit`` is falsy)."""
    if not limit:
        return samples
    order = torch.randperm(len(samples), generator=torch.Generator().manual_seed(seed)).tolist()
    taken: Counter = Counter()
    kept = []
    for i in order:
        target = samples[i][1]
        if taken[target] < limit:
            taken[target] += 1
            kept.append(i)
    return [samples[i] for i in sorted(kept)]


def find_splits(data: str | Path, val_fraction: float = 0.1, seed: int = 0, limit: int | None = None) -> Splits:
    """``data/train`` + ``data/val`` when present, else a stratified ``val_fraction`` split of ``data``."""
    data = Path(data)
    if (data / "train").is_dir():
        train = scan_folder(data / "train")
        if (data / "val").is_dir():
            val = scan_folder(data / "val", train.classes)
            return Splits(
                train.classes,
                limit_per_class(train.samples, limit, seed),
                limit_per_class(val.samples, limit, seed),
                f"{data}/train and {data}/val",
            )
        scan, where = train, f"{data}/train"
    else:
        scan, where = scan_folder(data), str(data)
    samples = limit_per_class(scan.samples, limit, seed)
    targets = [t for _, t in samples]
    too_few = [scan.classes[t] for t, n in Counter(targets).items() if n < 2]
    if too_few:
        raise ValueError(f"{where}: classes {too_few} have fewer than 2 images; a validation split needs 2 or more")
    n_val = max(len(scan.classes), round(len(samples) * val_fraction))
    train_s, val_s = train_test_split(samples, test_size=n_val, stratify=targets, random_state=seed)
    return Splits(
        scan.classes,
        sorted(train_s),
        sorted(val_s),
        f"{where}, stratified {val_fraction:g} validation split (seed {seed})",
    )


def class_counts(samples: list[Sample], classes: Sequence[str]) -> dict[str, int]:
    counter = Counter(t for _, t in samples)
    return {name: counter.get(i, 0) for i, name in enumerate(classes)}


class EvalImages(torch.utils.data.Dataset):
    """Serving-path tensors: file bytes -> ``preprocess_bytes`` -> ``uint8 (3, crop, crop)``.

    Returns ``(tensor, target, error)``: an unreadable image gives a zero tensor and the reason, so a
    batch still forms and the caller counts the failure instead of losing it.
    """

    def __init__(self, samples: Sequence[Sample], cfg: PreprocessConfig, limits: Limits = Limits()) -> None:
        self.samples, self.cfg, self.limits = list(samples), cfg, limits

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, str]:
        path, target = self.samples[i]
        try:
            return preprocess_bytes(Path(path).read_bytes(), self.cfg, self.limits), target, ""
        except (InputError, OSError) as e:
            return torch.zeros(3, self.cfg.crop, self.cfg.crop, dtype=torch.uint8), target, f"{type(e).__name__}: {e}"


def art_augmentation(cfg: PreprocessConfig, min_scale: float = 0.35) -> v2.Compose:
    """Mild changes a photo of an artwork plausibly has: framing, mirror, small tilt and keystone, light.

    Colour carries class information here (icons' gold, watercolour washes, monochrome engravings), so
    saturation and hue are left almost alone. Works on PIL images and returns a PIL image.
    """
    return v2.Compose(
        [
            v2.RandomResizedCrop(cfg.crop, scale=(min_scale, 1.0), ratio=(3 / 4, 4 / 3), antialias=True),
            v2.RandomHorizontalFlip(),
            v2.RandomApply([v2.RandomRotation(5, fill=(255, 255, 255))], p=0.3),
            v2.RandomPerspective(distortion_scale=0.1, p=0.2, fill=(255, 255, 255)),
            v2.ColorJitter(brightness=0.15, contrast=0.15, saturation=0.05),
        ]
    )


class TrainImages(torch.utils.data.Dataset):
    """Training tensors: ``decode_image`` -> augmentation on the PIL image -> ``uint8 (3, crop, crop)``.

    With ``augment=None`` the image takes the evaluation path (centre crop), for overfitting checks.
    An unreadable training image stops the run with its path: training data should be clean.
    """

    def __init__(self, samples: Sequence[Sample], cfg: PreprocessConfig, augment: v2.Compose | None) -> None:
        self.samples, self.cfg, self.augment = list(samples), cfg, augment

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        path, target = self.samples[i]
        data = Path(path).read_bytes()
        try:
            if self.augment is None:
                return preprocess_bytes(data, self.cfg), target
            img: Image.Image = decode_image(data, draft_size=self.cfg.resize)
        except InputError as e:
            raise ValueError(f"training image {path} cannot be used: {e}; remove or fix it") from None
        return image_to_uint8(self.augment(img)), target
