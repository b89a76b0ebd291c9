"""How much of the classes survives at a given input size: a teacher scored on views that passed through S px.

    python -m training.resolution runs/teacher-lite0/teacher.pt --sizes 96 112 128 144 160 224 --dev-avoid ...

Each dev image's evaluation view (the centre crop, as served) is scaled down to S x S and back up to the teacher's
own resolution, so the teacher sees only the detail an S px student could see. The teacher's dev macro-F1 and
per-class F1 against S bound what distillation can give a student at S px (the student cannot use detail its input
does not hold); the serving cost of S grows as S squared. This chooses the student's input size before any
student is trained. Writes ``--output`` (JSON) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from handlers.precision import native_autocast_dtype
from training import DATA_DIR
from training.cache import ImageCache, view_batch
from training.data import dev_splits
from training.metrics import compute_metrics
from training.teacher_model import load_teachers


@torch.no_grad()
def scores_at(teacher, cache: ImageCache, size: int, device: torch.device, batch: int = 64) -> dict:
    """The teacher's metrics on ``cache`` when every view passed through ``size`` px."""
    amp = native_autocast_dtype(device)
    preds = []
    for start in range(0, len(cache), batch):
        idx = range(start, min(start + batch, len(cache)))
        x = view_batch(cache, idx, size, None, torch.Generator(), centre_fraction=224 / 256).float()
        if size != teacher.image_size:
            x = F.interpolate(x, size=(teacher.image_size,) * 2, mode="bilinear", align_corners=False)
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            preds.append(teacher(x.to(device).contiguous(memory_format=torch.channels_last)).float().argmax(1).cpu())
    return compute_metrics(cache.targets.tolist(), torch.cat(preds).tolist(), teacher.labels)


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    a = p.add_argument
    a("teacher", nargs="+", help="teacher checkpoint(s) from training.teacher; several are averaged (required)")
    a("--sizes", type=int, nargs="+", default=[96, 112, 128, 144, 160, 224], help="sizes S (default: %(default)s)")
    a("--data", default=str(DATA_DIR), help="ImageFolder directory with train/ (default: %(default)s)")
    a("--dev-fraction", type=float, default=0.1, help="the runs' --dev-fraction (default: %(default)s)")
    a("--dev-avoid", nargs="+", default=[], metavar="CHECKPOINT", help="the runs' --dev-avoid (default: none)")
    a("--seed", type=int, default=0, help="the runs' --seed (default: %(default)s)")
    a("--output", default="runs/resolution.json", help="JSON to write (default: %(default)s)")
    return p


def main(args: argparse.Namespace) -> dict:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    splits, _, dev = dev_splits(args.data, args.dev_fraction, args.seed, avoid=args.dev_avoid)
    teacher = load_teachers(args.teacher, splits.classes).to(device, memory_format=torch.channels_last)
    cache = ImageCache(dev)
    report = {}
    for size in args.sizes:
        m = scores_at(teacher, cache, size, device)
        report[size] = {"macro_f1": m["macro_f1"], "accuracy": m["accuracy"], "per_class": m["per_class"]}
        per_class = ", ".join(f"{k} {v['f1']:.3f}" for k, v in m["per_class"].items())
        cost = (size / 112) ** 2
        print(f"{size:4d} px: dev macro-F1 {m['macro_f1']:.4f} accuracy {m['accuracy']:.4f} | {per_class} | "
              f"compute {cost:.2f}x 112 px", flush=True)  # fmt: skip
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps({"dev_images": len(dev), "sizes": report}, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main(get_args_parser().parse_args(sys.argv[1:]))
