"""ImageFolder-style data for training and evaluation: find the images, split them, load them.

A data set is a folder of class folders (``<root>/<class>/<image>``), or one holding ``train/`` and
``val/`` folders of that shape. Labels are the class folder names, sorted, so another collection (say
nine cultures) trains with the same command.

Evaluation images go through exactly the serving path (``handlers.preprocessing.preprocess_bytes``);
training images are decoded the same way once, kept in memory and augmented there (``training.cache``).
"""

from __future__ import annotations

import csv
import hashlib
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from sklearn.model_selection import train_test_split

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


def split_dev(
    samples: list[Sample], fraction: float, seed: int, avoid: Collection[str] = ()
) -> tuple[list[Sample], list[Sample]]:
    """(train, dev): a fixed, stratified ``fraction`` of the training samples held out to choose epochs and
    recipes, so that the validation split chooses nothing. ``fraction`` 0 gives an empty dev split.

    ``avoid`` (content digests, as :func:`content_digests` gives them) keeps those images out of dev: dev is then
    drawn, class by class in the same proportions, only from images that some earlier model never trained on, so
    that model can be compared with or calibrated on it without optimism."""
    if fraction <= 0:
        return list(samples), []
    targets = [t for _, t in samples]
    if not avoid:
        n_dev = max(len(set(targets)), round(len(samples) * fraction))
        train_s, dev_s = train_test_split(samples, test_size=n_dev, stratify=targets, random_state=seed)
        return sorted(train_s), sorted(dev_s)
    avoid = set(avoid)
    gen = torch.Generator().manual_seed(seed)
    dev_s = []
    for cls in sorted(set(targets)):
        members = [s for s in samples if s[1] == cls]
        free = [s for s, d in zip(members, content_digests(members, keep_order=True), strict=True) if d not in avoid]
        want = max(1, round(len(members) * fraction))
        if len(free) < want:
            raise ValueError(
                f"class {cls}: {want} dev images wanted but only {len(free)} of {len(members)} are outside the "
                "avoided models' training images; lower --dev-fraction or avoid fewer models"
            )
        dev_s += [free[i] for i in torch.randperm(len(free), generator=gen)[:want].tolist()]
    chosen = set(dev_s)
    return sorted(s for s in samples if s not in chosen), sorted(dev_s)


def avoided_digests(checkpoints: Sequence[str | Path]) -> set[str]:
    """The training images (content digests) recorded by these checkpoints and by what they started from, for
    ``--dev-avoid``. A checkpoint whose record does not list them is an error: its dev figures could not be
    trusted."""
    digests: set[str] = set()
    for path in checkpoints:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        record = (ckpt.get("training") or {}) if isinstance(ckpt, dict) else {}
        listed = record.get("train_images_sha256_16")
        if not listed:
            raise SystemExit(f"--dev-avoid {path}: its record does not list its training images")
        digests.update(listed)
    return digests


def dev_splits(
    data: str | Path,
    dev_fraction: float,
    seed: int,
    limit_per_class: int = 0,
    val_fraction: float = 0.1,
    avoid: Sequence[str | Path] = (),
) -> tuple[Splits, list[Sample], list[Sample]]:
    """(splits, train, dev): DATA's splits, and its training split less a stratified ``dev_fraction`` held out to
    choose epochs, recipes, teachers and variants; ``splits.val`` chooses nothing. Training runs, teacher runs,
    probes and comparisons with the same arguments see the same lists. ``avoid``: checkpoints whose training
    images stay out of dev (:func:`split_dev`)."""
    splits = find_splits(data, val_fraction, seed, limit_per_class)
    return (splits, *split_dev(splits.train, dev_fraction, seed, avoided_digests(avoid) if avoid else ()))


def read_labelled_csv(
    path: str | Path, classes: Sequence[str], exclude: Sequence[Sample] = (), already: Sequence[Sample] = ()
) -> tuple[list[Sample], dict]:
    """Images and labels from a CSV with ``path`` and ``label`` columns (others are ignored), e.g. the curators'
    ``corrections.csv`` or final tags. Relative paths are taken from the CSV's folder, else from the working
    directory. Images in ``exclude`` (the dev and validation splits) are dropped, and images already in
    ``already`` (the training split) skipped; returns the samples to add and a record of what the file gave.
    In a file with a ``source`` column (``tagging.apply``'s final tags) only ``source=curator`` rows count: the
    model's own tags are skipped (``not_curator`` in the record). A label that is not among ``classes`` or a
    missing file is an error naming it."""
    path = Path(path)
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = {"path", "label"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"{path}: needs the columns path and label; it lacks {sorted(missing)}")
        rows = list(reader)
    curated_only = "source" in (reader.fieldnames or [])
    excluded = {str(Path(p).resolve()) for p, _ in exclude}
    present = {str(Path(p).resolve()) for p, _ in already}
    samples, dropped, skipped, not_curator, problems = [], 0, 0, 0, []
    for n, row in enumerate(rows, start=2):
        if curated_only and (row["source"] or "").strip() != "curator":
            not_curator += 1
            continue
        label, image = (row["label"] or "").strip(), Path((row["path"] or "").strip())
        if not image.is_absolute():
            image = path.parent / image if (path.parent / image).exists() else image
        if label not in classes:
            problems.append(f"line {n}: label {label!r} is not one of {list(classes)}")
        elif not image.is_file():
            problems.append(f"line {n}: no such image {image}")
        elif str(image.resolve()) in excluded:
            dropped += 1
        elif str(image.resolve()) in present:
            skipped += 1
        else:
            present.add(str(image.resolve()))
            samples.append((str(image), list(classes).index(label)))
    if problems:
        raise ValueError(f"{path}: {len(problems)} unusable rows: " + "; ".join(problems[:5]))
    record = {"file": str(path), "rows": len(rows), "added": len(samples), "already_in_train": skipped,
              "dropped_in_dev_or_val": dropped, "not_curator": not_curator}  # fmt: skip
    return samples, record


@dataclass
class RunSplits:
    """A training run's images: the folder's splits, the training images (curators' extras included), the dev
    images that pick the epoch, how dev was made, and what each ``--extra-train`` file added."""

    splits: Splits
    train: list[Sample]
    dev: list[Sample]
    dev_source: str
    extra_train: list[dict]


def run_splits(args) -> RunSplits:
    """The images of a run with ``args`` (``data``, ``val_fraction``, ``seed``, ``limit_per_class``,
    ``dev_fraction``, ``extra_train``): the same lists whenever the same arguments meet the same files."""
    avoid = getattr(args, "dev_avoid", None) or ()
    splits, train, dev = dev_splits(
        args.data, args.dev_fraction, args.seed, args.limit_per_class, args.val_fraction, avoid
    )
    dev_source = (
        f"{args.dev_fraction:g} of the training split, stratified (seed {args.seed})"
        + (f", none of them trained on by {', '.join(map(str, avoid))}" if avoid else "")
        if dev
        else f"the validation split ({splits.source}); it also picks the epoch"
    )
    dev = dev or splits.val
    extra_train = []
    for csv_path in args.extra_train:
        added, record = read_labelled_csv(csv_path, splits.classes, dev + splits.val, train)
        train += added
        extra_train.append(record)
    return RunSplits(splits, train, dev, dev_source, extra_train)


def content_digests(samples: Sequence[Sample], keep_order: bool = False) -> list[str]:
    """Sorted sha256 prefixes (16 hex digits) of the samples' file bytes: the images themselves, whatever their
    names or folders. A training record keeps those of its training images, so that a later run can check that
    a model it starts from never trained on its dev or validation images. ``keep_order``: in the samples' order."""
    digests = [hashlib.sha256(Path(p).read_bytes()).hexdigest()[:16] for p, _ in samples]
    return digests if keep_order else sorted(digests)


def class_counts(samples: list[Sample], classes: Sequence[str]) -> dict[str, int]:
    counter = Counter(t for _, t in samples)
    return {name: counter.get(i, 0) for i, name in enumerate(classes)}
