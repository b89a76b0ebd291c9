"""Evaluate a checkpoint on any ImageFolder directory (``DATA_DIR/<class>/<image>``).

    python -m training.evaluate DATA_DIR --checkpoint runs/art5/best.pt --json out.json

Prints scikit-learn's classification report (per-class precision, recall, F1, support; accuracy; macro
and weighted averages), the confusion matrix and the throughput, and writes a confusion-matrix PNG.
The checkpoint is evaluated through the serving classifier (``handlers.classifier.ArtClassifier``: the
handler's own decode and predict). Images that cannot be classified (unreadable files) are counted,
listed and left out of the metrics, never dropped silently. A running server is evaluated on a folder
with ``python -m tagging.evaluate DATA_DIR --url ...``, which sends real requests and uses this report.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from handlers.calibration import Calibration
from handlers.classifier import ArtClassifier
from handlers.errors import InputError
from handlers.model import load_checkpoint
from handlers.precision import precision_of, resolve_precision
from handlers.preprocessing import Limits, PreprocessConfig, preprocess_bytes
from training import exit_on_bad_input
from training.confidence import calibration_report
from training.data import FolderScan, Sample, class_counts, scan_folder
from training.metrics import compute_metrics, confusion_text, plot_confusion, plot_reliability, text_report


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


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def default_workers(device: torch.device) -> int:
    """Loader processes: several on CUDA; none on CPU, where they and the spinning OpenMP compute
    threads fight over the few cores (a tiny model trained 25x slower with one worker on 2 cores)."""
    return min(8, os.cpu_count() or 1) if device.type == "cuda" else 0


def eval_loader(
    samples, cfg: PreprocessConfig, batch_size: int, workers: int, device: torch.device
) -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(
        EvalImages(samples, cfg),
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        pin_memory=device.type == "cuda",
    )


def predict_batches(
    classifier: ArtClassifier, loader: torch.utils.data.DataLoader
) -> tuple[torch.Tensor, list[int], list[tuple[int, str]]]:
    """Probabilities ``(N, classes)`` for the readable images, their targets, and ``(index, error)`` failures.

    ``loader`` yields :class:`EvalImages` batches; each is classified by ``classifier.predict``,
    the handler's own step (normalised on the classifier's device, in its precision and memory layout).
    """
    probs, targets, failures = [], [], []
    offset = 0
    for batch, target, errors in loader:
        ok = [i for i, e in enumerate(errors) if not e]
        failures += [(offset + i, e) for i, e in enumerate(errors) if e]
        offset += len(errors)
        if ok:
            probs.append(classifier.predict(batch[ok]))
            targets += target[ok].tolist()
    n_classes = getattr(classifier.model, "num_classes", 0)
    return (torch.cat(probs) if probs else torch.empty(0, n_classes)), targets, failures


def predict(
    model: torch.nn.Module,
    loader: torch.utils.data.DataLoader,
    cfg: PreprocessConfig,
    device: torch.device,
    channels_last: bool = False,
    autocast_dtype: torch.dtype | None = None,
) -> tuple[torch.Tensor, list[int], list[tuple[int, str]]]:
    """:func:`predict_batches` for a bare model (the training loop's, in eval mode from here on)."""
    classifier = ArtClassifier(model, cfg, device=device, precision=precision_of(autocast_dtype, channels_last))
    return predict_batches(classifier, loader)


def evaluate_checkpoint(
    samples: Sequence[Sample],
    checkpoint: str | Path,
    batch_size: int,
    workers: int,
    device: torch.device,
    precision: str = "fp32",
) -> tuple[list[int], list[int], list[tuple[str, str]], torch.Tensor]:
    """(y_true, y_pred, failures as (path, error), probabilities) for every image of ``samples``."""
    classifier = ArtClassifier.load(checkpoint, device=device, precision=precision)
    loader = eval_loader(samples, classifier.preprocess, batch_size, workers, device)
    probs, y_true, failures = predict_batches(classifier, loader)
    y_pred = probs.argmax(dim=1).tolist()
    return y_true, y_pred, [(samples[i][0], e) for i, e in failures], probs


def add_report_args(p: argparse.ArgumentParser) -> None:
    """The data folder and the report's outputs, shared with ``tagging.evaluate``."""
    p.add_argument("data_dir", help="ImageFolder directory: DATA_DIR/<class>/<image> (required)")
    p.add_argument("--json", default=None, help="write the metrics as JSON to this path (default: none)")
    p.add_argument(
        "--confusion-png",
        default=None,
        help="confusion-matrix PNG (default: next to --json as <name>.confusion.png, "
        "else runs/eval/<DATA_DIR name>.confusion.png)",
    )


def scan_data(data_dir: str | Path, labels: Sequence[str] | None) -> FolderScan:
    """:func:`~training.data.scan_folder`, with a line saying what it found."""
    scan = scan_folder(data_dir, labels)
    counts = class_counts(scan.samples, scan.classes)
    print(f"{data_dir}: {len(scan.samples)} images in {len(counts)} classes {counts}")
    if scan.skipped:
        print(f"skipped {len(scan.skipped)} files that are not images by name, e.g. {scan.skipped[:3]}")
    return scan


def report(
    args: argparse.Namespace,
    scan: FolderScan,
    predictions: tuple[list[int], list[int], list[tuple[str, str]]],
    seconds: float,
    source: dict,
) -> dict:
    """Print and write (``--json``, ``--confusion-png``) the metrics of ``predictions`` = (y_true, y_pred,
    failures as (path, error)) on ``scan``; return the metrics dict."""
    y_true, y_pred, failures = predictions
    for path, error in failures:
        print(f"NOT CLASSIFIED {path}: {error}")
    metrics = compute_metrics(y_true, y_pred, scan.classes)
    metrics.update(
        images_per_second=len(scan.samples) / seconds,
        seconds=seconds,
        n_failed=len(failures),
        failed=[{"path": path, "error": error} for path, error in failures],
        n_skipped=len(scan.skipped),
        data_dir=str(args.data_dir),
        **source,
    )
    print(text_report(y_true, y_pred, scan.classes))
    print(confusion_text(metrics["confusion"], scan.classes))
    print(
        f"\nclassified {metrics['n_images']} of {len(scan.samples)} images in {seconds:.1f} s "
        f"({metrics['images_per_second']:.1f} images/s); {len(failures)} could not be classified"
    )
    png = args.confusion_png or (
        str(Path(args.json).with_suffix("")) + ".confusion.png"
        if args.json
        else f"runs/eval/{Path(args.data_dir).resolve().name}.confusion.png"
    )
    title = f"{Path(args.data_dir).name}: accuracy {metrics['accuracy']:.3f}, macro-F1 {metrics['macro_f1']:.3f}"
    plot_confusion(metrics["confusion"], scan.classes, png, title)
    print(f"confusion matrix: {png}")
    if "confidence" in metrics:
        c, floor = metrics["confidence"], metrics["confidence"]["ece_if_perfectly_calibrated"]
        reliability_png = str(png).removesuffix(".png").removesuffix(".confusion") + ".reliability.png"
        plot_reliability(c, reliability_png, f"{Path(args.data_dir).name}: reliability")
        print(
            f"expected calibration error {c['ece']:.4f}"
            + (f" (before calibration {c['ece_uncalibrated']:.4f})" if c["calibrated"] else " (not calibrated)")
            + f"; a perfectly calibrated model would show {floor['q05']:.3f}-{floor['q95']:.3f} on these images; "
            f"reliability diagram: {reliability_png}"
        )
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
        print(f"metrics: {args.json}")
    return metrics


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_report_args(p)
    p.add_argument("--checkpoint", required=True, help="artserve checkpoint to evaluate in-process (required)")
    p.add_argument("--batch-size", type=int, default=32, help="images per batch (default: 32)")
    p.add_argument(
        "--workers", type=int, default=None, help="loader processes (default: min(8, CPUs) on CUDA, 0 on CPU)"
    )
    p.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    p.add_argument(
        "--precision",
        default="fp32",
        choices=("auto", "fp32", "bf16", "fp16"),
        help="compute precision, as the server's handler.precision; other than fp32, the fp32 answers are "
        "computed too and compared (changed top-1, largest probability difference) (default: fp32)",
    )
    return p


def precision_check(fp32: torch.Tensor, reduced: torch.Tensor, name: str) -> dict:
    """How far the reduced-precision answers are from fp32's on the same images."""
    return {
        "precision": name,
        "reference": "fp32",
        "n_images": len(fp32),
        "changed_predictions": int((fp32.argmax(1) != reduced.argmax(1)).sum()),
        "max_probability_difference": float((fp32 - reduced).abs().max()) if len(fp32) else 0.0,
    }


def run(args: argparse.Namespace) -> dict:
    """Evaluate as ``args`` say; return the metrics dict (also written to ``--json``)."""
    scan = scan_data(args.data_dir, list(load_checkpoint(args.checkpoint)["labels"]))
    device = torch.device(args.device) if args.device else default_device()
    workers = default_workers(device) if args.workers is None else args.workers
    start = time.perf_counter()
    y_true, y_pred, failures, probs = evaluate_checkpoint(
        scan.samples, args.checkpoint, args.batch_size, workers, device, args.precision
    )
    seconds = time.perf_counter() - start
    source = {"checkpoint": str(args.checkpoint), "device": str(device), "precision": args.precision}
    if args.precision != "fp32":
        *_, fp32 = evaluate_checkpoint(scan.samples, args.checkpoint, args.batch_size, workers, device, "fp32")
        check = precision_check(fp32, probs, str(resolve_precision({"precision": args.precision}, device, env={})))
        source["precision_check"] = check
        print(
            f"{check['precision']} vs fp32 on {check['n_images']} images: {check['changed_predictions']} top-1 "
            f"predictions changed, largest probability difference {check['max_probability_difference']:.2e}"
        )
    calibration = Calibration.from_checkpoint(load_checkpoint(args.checkpoint))
    source["confidence"] = calibration_report(probs, torch.tensor(y_true), calibration.temperature)
    return report(args, scan, (y_true, y_pred, failures), seconds, source)


main = exit_on_bad_input(run)


if __name__ == "__main__":
    main(get_args_parser().parse_args())
