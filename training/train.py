"""Train an ArtVGG classifier on any ImageFolder directory.

    python -m training.train --data ../shared/data/art5 --output runs/art5
    python -m training.train --config training/configs/art5-cpu.yaml --time-budget 120   # stop cleanly after 2 h
    python -m training.train --config training/configs/art5-cpu.yaml --resume            # continue from last.pt

The label set is the sorted class folder names. ``DATA/train`` and ``DATA/val`` are used when present, else a
stratified validation split with a fixed seed. A fixed, stratified ``--dev-fraction`` of the training split is
held out as the *dev* split, which picks the best epoch; ``DATA/val`` then chooses nothing and is evaluated once,
with ``best.pt``, when the run ends (``final_val`` in the record). With ``--dev-fraction 0`` the validation split
is the dev split (it then also picks the epoch, and its figures are optimistic).

Training images are decoded once into memory (``training.cache``); bf16 autocast and channels_last are used
where the hardware runs them natively (``--amp auto``: CUDA, or a CPU with AVX512_BF16/AMX). ``--teacher``
distils a fine-tuned EfficientNet-Lite (``training.teacher``), or several averaged, into the student on the same views.
``--time-budget`` stops the run cleanly, mid-epoch if need be, and ``--resume`` continues it exactly where it
stopped with the schedule intact, so a long run can span several sessions.

The run directory gets ``args.yaml`` (the resolved arguments), ``metrics.csv`` (one row per epoch), ``best.pt``
(best dev macro-F1, with a ``training`` record that the serving tools require), ``last.pt`` (for ``--resume``),
``curves.png`` and, at the end, ``final.json`` (best.pt on the validation split). Dev and validation images take
the serving preprocessing (``preprocess_bytes`` + ``normalize``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from training import options
from training.loop import Trainer
from training.run_state import resolve_precision
from training.timing import time_steps

#: What the tests and other tools use of the command (the run's state and loop live in run_state.py and loop.py).
__all__ = ["Trainer", "get_args_parser", "main", "parse_args", "resolve_precision"]


def get_args_parser() -> argparse.ArgumentParser:
    return options.get_args_parser(__doc__)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Flags over ``--config`` YAML over built-in defaults."""
    return options.parse_args(argv, __doc__)


def main(args: argparse.Namespace) -> Path:
    """Train as ``args`` say; returns the run directory."""
    run_dir = Path(args.output)
    if (run_dir / "last.pt").exists() and not args.resume and not args.max_steps:
        raise SystemExit(f"{run_dir} already holds a run: pass --resume to continue it, or choose another --output")
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        trainer = Trainer(args)
    except (ValueError, FileNotFoundError) as e:
        raise SystemExit(f"error: {e}") from None
    if args.max_steps:
        time_steps(trainer, args.max_steps)
        return run_dir
    (run_dir / "args.yaml").write_text(yaml.safe_dump(vars(args), sort_keys=False), encoding="utf-8")
    if args.resume:
        trainer.restore()
    print(
        f"data: {trainer.splits.source}; {len(trainer.splits.classes)} classes {trainer.splits.classes}; "
        f"{len(trainer.train)} train / {len(trainer.dev)} dev ({trainer.dev_source}) / {len(trainer.splits.val)} val\n"
        + "".join(f"extra: {r['file']} added {r['added']} of {r['rows']} rows\n" for r in trainer.extra_train)
        + f"cache: {len(trainer.cache)} images, {trainer.cache.nbytes() / 1e6:.0f} MB, {trainer.cache_seconds:.1f} s\n"
        f"model: {args.arch}, weights {trainer.pretrained}, {args.freeze_blocks} blocks frozen, teacher "
        f"{args.teacher}; device {trainer.device}, autocast {trainer.amp_dtype}, channels_last "
        f"{trainer.channels_last}; run dir {run_dir}",
        flush=True,
    )
    trainer.fit()
    if trainer.stopped_by_budget or not trainer.best_epoch:
        return run_dir
    final = trainer.final_evaluation()
    print(
        f"best dev macro-F1 {trainer.best_f1:.4f} at epoch {trainer.best_epoch}: {run_dir / 'best.pt'}; on the "
        f"validation split ({final['n_images']} images, chosen by the {final['chosen_by']}): accuracy "
        f"{final['accuracy']:.4f}, macro-F1 {final['macro_f1']:.4f}"
    )
    return run_dir


if __name__ == "__main__":
    main(parse_args(sys.argv[1:]))
