"""Two checkpoints on the same images: is the second better than the first by more than the images can resolve?

    python -m training.compare model_store/art-category.pt runs/art5-cpu112-kd2/best.pt     # on the runs' dev split
    python -m training.compare A.pt B.pt --split val --json runs/compare.json

Choosing a recipe or replacing the default on a dev split of about 300 images means telling differences of a
few hundredths of macro-F1 from chance. Both checkpoints classify the same images through the serving classifier
(fp32, each at its own input size); a paired bootstrap (the same resampled images for both) gives the difference
B - A in macro-F1 with its 95 % interval and the share of resamples in which B comes out ahead. The dev split is
the training runs' (``--dev-fraction`` of DATA/train, stratified, ``--seed``); ``--split val`` reads DATA/val,
which should report figures, not choose between models. Writes ``--json`` when given.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from handlers.model import load_checkpoint
from training import DATA_DIR, exit_on_bad_input
from training.data import dev_splits
from training.evaluate import default_device, default_workers, evaluate_checkpoint
from training.metrics import compute_metrics


def macro_f1_rows(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Macro-F1 of each row of ``(resamples, n)`` label arrays, averaged (as :func:`compute_metrics`) over the
    classes that occur in that row's truth or predictions."""
    rows = np.arange(y_true.shape[0])[:, None]

    def counts(labels: np.ndarray, mask: np.ndarray) -> np.ndarray:
        flat = (rows * n_classes + labels)[mask]
        return np.bincount(flat, minlength=y_true.shape[0] * n_classes).reshape(-1, n_classes)

    hit = y_true == y_pred
    tp = counts(y_true, hit)
    fn = counts(y_true, ~hit)
    fp = counts(y_pred, ~hit)
    denominator = 2 * tp + fp + fn
    present = denominator > 0
    f1 = np.where(present, 2 * tp / np.maximum(denominator, 1), 0.0)
    return f1.sum(axis=1) / present.sum(axis=1)


def paired_bootstrap(
    y_true: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray, n_classes: int, resamples: int = 2000, seed: int = 0
) -> dict:
    """Macro-F1 of A and B on all images, B - A, and the 95 % percentile interval of B - A over ``resamples``
    draws of the images with replacement (each draw scores both on the same images)."""
    y_true, pred_a, pred_b = (np.asarray(v, dtype=np.int64) for v in (y_true, pred_a, pred_b))
    full = [float(macro_f1_rows(y_true[None], p[None], n_classes)[0]) for p in (pred_a, pred_b)]
    idx = np.random.default_rng(seed).integers(0, len(y_true), size=(resamples, len(y_true)))
    diff = macro_f1_rows(y_true[idx], pred_b[idx], n_classes) - macro_f1_rows(y_true[idx], pred_a[idx], n_classes)
    low, high = np.quantile(diff, [0.025, 0.975])
    return {
        "macro_f1_a": full[0],
        "macro_f1_b": full[1],
        "difference": full[1] - full[0],
        "interval_95": [float(low), float(high)],
        "share_b_ahead": float((diff > 0).mean()),
        "resolved": bool(low > 0 or high < 0),
        "images": len(y_true),
        "disagreements": int((pred_a != pred_b).sum()),
        "resamples": resamples,
    }


def compare(args: argparse.Namespace) -> dict:
    splits, _, dev = dev_splits(args.data, args.dev_fraction, args.seed, avoid=args.dev_avoid)
    samples = dev if args.split == "dev" else splits.val
    if not samples:
        raise ValueError(f"the {args.split} split of {args.data} is empty")
    for checkpoint in (args.a, args.b):
        labels = list(load_checkpoint(checkpoint)["labels"])
        if labels != splits.classes:
            raise ValueError(f"labels differ: {checkpoint} has {labels}, {args.data} {splits.classes}")
    device = torch.device(args.device) if args.device else default_device()
    answers = []  # {sample index: predicted label index} of each checkpoint's readable images
    for checkpoint in (args.a, args.b):
        _, y_pred, failures, _ = evaluate_checkpoint(
            samples, checkpoint, args.batch_size, default_workers(device), device, "fp32"
        )
        failed = {path for path, _ in failures}
        readable = [i for i, (path, _) in enumerate(samples) if path not in failed]
        answers.append(dict(zip(readable, y_pred, strict=True)))
    both = sorted(set(answers[0]) & set(answers[1]))
    y = [samples[i][1] for i in both]
    a, b = ([answer[i] for i in both] for answer in answers)
    result = paired_bootstrap(np.array(y), np.array(a), np.array(b), len(splits.classes), args.resamples, args.seed)
    result.update(
        a=str(args.a),
        b=str(args.b),
        split=args.split,
        unreadable=len(samples) - len(both),
        metrics_a=compute_metrics(y, a, splits.classes),
        metrics_b=compute_metrics(y, b, splits.classes),
    )
    return result


def summary(r: dict) -> str:
    low, high = r["interval_95"]
    verdict = "resolved" if r["resolved"] else "not resolved: the interval includes 0"
    return (
        f"{r['split']} ({r['images']} images, {r['disagreements']} answered differently): "
        f"macro-F1 A {r['macro_f1_a']:.3f}, B {r['macro_f1_b']:.3f}; B - A {r['difference']:+.3f}, "
        f"95 % interval [{low:+.3f}, {high:+.3f}] "
        f"({r['resamples']} paired resamples, B ahead in {r['share_b_ahead']:.0%}): {verdict}"
    )


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    a = p.add_argument
    a("a", help="checkpoint A (e.g. the shipped default)")
    a("b", help="checkpoint B (the candidate)")
    a("--data", default=str(DATA_DIR), help="ImageFolder directory with train/ and val/ (default: %(default)s)")
    a("--split", default="dev", choices=("dev", "val"), help="(default: dev, as the training runs make it)")
    a("--dev-fraction", type=float, default=0.1, help="the runs' --dev-fraction (default: %(default)s)")
    a("--dev-avoid", nargs="+", default=[], metavar="CHECKPOINT", help="the runs' --dev-avoid (default: none)")
    a("--seed", type=int, default=0, help="the runs' --seed, also the bootstrap's (default: %(default)s)")
    a("--resamples", type=int, default=2000, help="bootstrap draws (default: %(default)s)")
    a("--batch-size", type=int, default=32, help="images per batch (default: %(default)s)")
    a("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    a("--json", default=None, help="write the result here (default: none)")
    return p


@exit_on_bad_input
def main(args: argparse.Namespace) -> None:
    result = compare(args)
    print(summary(result))
    if args.json:
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main(get_args_parser().parse_args(sys.argv[1:]))
