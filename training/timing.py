"""Timing runs of ``training.train --max-steps N``: time N steps, extrapolate an epoch, write ``timing.yaml``."""

from __future__ import annotations

import statistics
import time
from typing import TYPE_CHECKING

import torch
import yaml

from training import runlog
from training.cache import epoch_order
from training.schedule import size_at

if TYPE_CHECKING:
    from training.loop import Trainer


def time_steps(trainer: Trainer, n: int) -> dict:
    """Timing run: ``n`` training steps of epoch 1, the first two excluded; writes ``timing.yaml``."""
    args, times = trainer.args, []
    trainer.model.train()
    order = epoch_order(len(trainer.train), args.seed, 1)
    for i in range(min(n, trainer.steps)):
        start = time.perf_counter()
        trainer.train_step(1, i, order)
        if trainer.device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    timed = times[2:] if len(times) > 2 else times
    step = statistics.median(timed)
    result = {
        "arch": args.arch,
        "device": str(trainer.device),
        "autocast": str(trainer.amp_dtype),
        "channels_last": trainer.channels_last,
        "teacher": args.teacher,
        "batch_size": args.batch_size,
        "image_size": size_at(args, 1),
        "steps_timed": len(timed),
        "step_seconds_median": step,
        "step_seconds_all": times,
        "images_per_second": args.batch_size / step,
        "epoch_seconds_extrapolated": step * trainer.steps,
    }
    print(
        f"timing: {args.arch} on {trainer.device} ({trainer.amp_dtype}, channels_last {trainer.channels_last}), "
        f"batch {args.batch_size}, {result['image_size']} px: median {step:.3f} s/step over {len(timed)} steps = "
        f"{result['images_per_second']:.1f} img/s; an epoch of {trainer.steps} steps extrapolates to "
        f"{runlog.hms(result['epoch_seconds_extrapolated'])}"
    )
    (trainer.run_dir / "timing.yaml").write_text(yaml.safe_dump(result, sort_keys=False), encoding="utf-8")
    return result
