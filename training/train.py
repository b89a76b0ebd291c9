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
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml

from handlers.model import ArtVGG, build_model, load_checkpoint, save_checkpoint
from handlers.precision import native_autocast_dtype
from handlers.preprocessing import PreprocessConfig, normalize
from training import options, runlog, schedule
from training.cache import ImageCache, ViewConfig, epoch_order, step_generator, view_batch
from training.data import class_counts, content_digests, run_splits
from training.distill import distillation_loss
from training.evaluate import default_workers, eval_loader, predict
from training.metrics import compute_metrics
from training.schedule import size_at
from training.teacher import load_teachers  # its model code is imported only when a teacher is built
from training.timing import time_steps
from training.weights import freeze_blocks, load_init, load_pretrained

METRIC_FIELDS = (
    "epoch",
    "lr",
    "image_size",
    "train_loss",
    "train_acc",
    "dev_loss",
    "dev_acc",
    "dev_macro_f1",
    "dev_weighted_f1",
    "epoch_seconds",
    "train_images_per_second",
)


def get_args_parser() -> argparse.ArgumentParser:
    return options.get_args_parser(__doc__)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Flags over ``--config`` YAML over built-in defaults."""
    return options.parse_args(argv, __doc__)


def resolve_precision(args: argparse.Namespace) -> tuple[torch.device, torch.dtype | None, bool]:
    """The device, the autocast dtype (None = fp32) and whether to use channels_last."""
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    native = native_autocast_dtype(device)
    if args.amp == "off":
        amp = None
    elif args.amp == "on":
        amp = native or torch.bfloat16
    else:
        amp = native
    channels_last = args.channels_last == "on" or (
        args.channels_last == "auto" and (amp is not None or device.type == "cuda")
    )
    return device, amp, channels_last


class Trainer:
    """One run: data, model, optimiser and the epoch loop; state that --resume restores lives here."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.run_dir = Path(args.output)
        self.device, self.amp_dtype, self.channels_last = resolve_precision(args)
        if args.workers is None:
            args.workers = default_workers(self.device)
        torch.manual_seed(args.seed)
        run = run_splits(args)
        self.splits, self.train, self.dev, self.dev_source = run.splits, run.train, run.dev, run.dev_source
        self.extra_train = run.extra_train
        self.train_digests = content_digests(self.train)  # for a later --init-from from this run
        self.cfg = PreprocessConfig(resize=args.resize, crop=args.image_size)
        self.model = ArtVGG(len(self.splits.classes), args.arch)
        self.pretrained = load_pretrained(self.model, args.pretrained)
        self.init_from = None
        if args.init_from:
            if args.pretrained != "none":
                raise SystemExit("--init-from loads the whole model; it cannot be combined with --pretrained")
            dev = {"split": self.dev_source, "counts": class_counts(self.dev, self.splits.classes)}
            held_out = set(content_digests(self.dev + self.splits.val))
            self.init_from = load_init(self.model, args.init_from, self.splits.classes, held_out, dev)
            self.pretrained = f"init-from {args.init_from} (whole model, after its epoch {self.init_from['epoch']})"
        if args.freeze_blocks and args.pretrained == "none" and not args.init_from:
            raise SystemExit("--freeze-blocks with --pretrained none would freeze random weights; load weights first")
        self.frozen = freeze_blocks(self.model, args.freeze_blocks)
        self.memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
        self.model.to(self.device, memory_format=self.memory_format)
        self.forward = torch.compile(self.model) if args.compile else self.model
        self.teacher = None
        if args.teacher:
            self.teacher = load_teachers(args.teacher, self.splits.classes).to(
                self.device, memory_format=self.memory_format
            )
        self.optimizer = schedule.make_optimizer(args, self.model)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.criterion = schedule.make_criterion(args, self.train, self.splits.classes, self.device)
        start = time.perf_counter()
        self.cache = ImageCache(self.train, args.cache_side)
        self.cache_seconds = time.perf_counter() - start
        self.views = ViewConfig(min_scale=args.min_scale) if args.augment == "art" else None
        self.steps = max(1, len(self.train) // args.batch_size)  # no small tail batch for BatchNorm
        self.dev_loader = eval_loader(self.dev, self.cfg, args.batch_size * 2, args.workers, self.device)
        self.rows: list[dict] = []
        self.start_epoch, self.start_step, self.partial = 1, 0, None
        self.best_f1, self.best_epoch, self.bad_epochs = -1.0, 0, 0
        self.stopped_by_budget = False

    # --- state -------------------------------------------------------------------------------
    def record(self, epoch: int) -> dict:
        """The ``training`` entry of a checkpoint (serving tools refuse checkpoints without one)."""
        best = next((r for r in self.rows if r["epoch"] == self.best_epoch), {})
        return {
            "epoch": epoch,
            "epochs": self.args.epochs,
            "best_epoch": self.best_epoch,
            "best_dev": {k: best.get(k) for k in ("dev_acc", "dev_macro_f1", "dev_weighted_f1", "dev_loss")},
            "dev_split": self.dev_source,
            "data": str(Path(self.args.data).resolve()),
            "split": self.splits.source,
            "class_counts": {
                "train": class_counts(self.train, self.splits.classes),
                "dev": class_counts(self.dev, self.splits.classes),
                "val": class_counts(self.splits.val, self.splits.classes),
            },
            "extra_train": self.extra_train,
            "train_images_sha256_16": self.train_digests,
            "pretrained": self.pretrained,
            "init_from": self.init_from,
            "teacher": self.args.teacher,
            "precision": {"autocast": str(self.amp_dtype), "channels_last": self.channels_last},
            "train_seconds": sum(r["epoch_seconds"] for r in self.rows),
            "args": vars(self.args),
            "torch": str(torch.__version__),
            "device": str(self.device),
        }

    def save(self, epoch: int, improved: bool, step: int = 0) -> None:
        """``last.pt`` after ``epoch`` complete epochs and ``step`` steps of the next one; ``best.pt`` if improved."""
        resume = {
            "epoch": epoch,
            "step": step,
            "partial": self.partial if step else None,
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "best_f1": self.best_f1,
            "best_epoch": self.best_epoch,
            "bad_epochs": self.bad_epochs,
        }
        extra = {"training": self.record(epoch), "resume": resume}
        tmp = self.run_dir / "last.pt.tmp"
        save_checkpoint(tmp, self.model, self.splits.classes, self.cfg, extra=extra)
        tmp.replace(self.run_dir / "last.pt")
        if improved:
            tmp = self.run_dir / "best.pt.tmp"
            save_checkpoint(tmp, self.model, self.splits.classes, self.cfg, extra={"training": extra["training"]})
            tmp.replace(self.run_dir / "best.pt")

    def restore(self) -> None:
        path = self.run_dir / "last.pt"
        if not path.exists():
            raise SystemExit(f"--resume: {path} does not exist; start without --resume")
        ckpt = load_checkpoint(path)
        if ckpt["arch"] != self.args.arch or list(ckpt["labels"]) != self.splits.classes:
            raise SystemExit(
                f"--resume: {path} is {ckpt['arch']} with labels {ckpt['labels']}, "
                f"this run is {self.args.arch} with {self.splits.classes}"
            )
        self.model.load_state_dict(ckpt["state_dict"])
        state = ckpt["resume"]
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        self.start_epoch, self.start_step = state["epoch"] + 1, state.get("step", 0)
        self.partial = state.get("partial")
        self.best_f1, self.best_epoch, self.bad_epochs = state["best_f1"], state["best_epoch"], state["bad_epochs"]
        self.rows = [r for r in runlog.read_rows(self.run_dir / "metrics.csv") if r["epoch"] <= state["epoch"]]
        print(
            f"resumed from {path} after epoch {state['epoch']}, step {self.start_step} "
            f"(best dev macro-F1 {self.best_f1:.4f})"
        )

    # --- one step ----------------------------------------------------------------------------
    def batch(self, epoch: int, step: int, order: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(student input, teacher input or empty, targets) for one step; the views depend only on (epoch, step)."""
        args = self.args
        idx = order[step * args.batch_size : (step + 1) * args.batch_size].tolist()
        size = size_at(args, epoch)
        gen = step_generator(args.seed, epoch, step)
        fraction = self.cfg.crop / self.cfg.resize
        view_size = self.teacher.image_size if self.teacher is not None else size
        views = view_batch(self.cache, idx, view_size, self.views, gen, fraction).to(self.device)
        student = views
        if self.teacher is not None:  # the student sees the teacher's view, scaled down
            student = F.interpolate(views.float(), size=(size, size), mode="bilinear", antialias=True)
        empty = torch.empty(0)
        return student, (views if self.teacher is not None else empty), self.cache.targets[idx].to(self.device)

    def train_step(self, epoch: int, step: int, order: torch.Tensor) -> tuple[float, int, int]:
        """One optimiser step; returns (summed loss, correct, images)."""
        args = self.args
        torch.manual_seed((args.seed * 100_003 + epoch) * 1_000_003 + step)  # dropout, mixup: same after --resume
        schedule.set_lr(self.optimizer, schedule.lr_at(args, (epoch - 1) * self.steps + step, self.steps))
        x, t_x, y = self.batch(epoch, step, order)
        lam, perm = 1.0, None
        if args.mixup > 0:
            lam = float(torch.distributions.Beta(args.mixup, args.mixup).sample())
            perm = torch.randperm(len(y), device=y.device)
            x = lam * x.float() + (1 - lam) * x.float()[perm]
            if self.teacher is not None:
                t_x = lam * t_x.float() + (1 - lam) * t_x.float()[perm]
        x = x.contiguous(memory_format=self.memory_format)
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
            logits = self.forward(normalize(x, self.cfg)).float()
            loss = self.criterion(logits, y)
            if perm is not None:
                loss = lam * loss + (1 - lam) * self.criterion(logits, y[perm])
            if self.teacher is not None:
                with torch.no_grad():
                    t_logits = self.teacher(t_x.contiguous(memory_format=self.memory_format)).float()
                loss = distillation_loss(logits, t_logits, loss, args.kd_weight, args.kd_temperature)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return loss.item() * len(y), int((logits.argmax(1) == y).sum()), len(y)

    # --- loop --------------------------------------------------------------------------------
    def train_epoch(self, epoch: int, deadline: float) -> dict | None:
        """Train one epoch; None when the time budget ran out first (last.pt then holds the position)."""
        self.model.train()
        for block in self.frozen:
            block.eval()  # frozen BatchNorm keeps its statistics
        order = epoch_order(len(self.train), self.args.seed, epoch)
        first = self.start_step if epoch == self.start_epoch else 0
        p = self.partial if first else None
        loss_sum, correct, seen, seconds = (p["loss_sum"], p["correct"], p["seen"], p["seconds"]) if p else (0, 0, 0, 0)
        start = time.perf_counter() - seconds
        for i in range(first, self.steps):
            loss, ok, n = self.train_step(epoch, i, order)
            loss_sum, correct, seen = loss_sum + loss, correct + ok, seen + n
            if (i + 1) % self.args.log_every == 0 or i + 1 == self.steps:
                elapsed = time.perf_counter() - start
                eta = runlog.hms(elapsed / seen * (self.steps * self.args.batch_size - seen))
                print(
                    f"epoch {epoch}/{self.args.epochs} step {i + 1}/{self.steps} loss {loss_sum / seen:.4f} "
                    f"{seen / elapsed:.1f} img/s, epoch ETA {eta}",
                    flush=True,
                )
            if deadline and time.perf_counter() > deadline and i + 1 < self.steps:
                self.partial = {
                    "loss_sum": loss_sum,
                    "correct": correct,
                    "seen": seen,
                    "seconds": time.perf_counter() - start,
                }
                self.save(epoch - 1, False, step=i + 1)
                return None
        seconds = time.perf_counter() - start
        self.partial = None
        return {
            "epoch": epoch,
            "lr": self.optimizer.param_groups[0]["lr"],
            "image_size": size_at(self.args, epoch),
            "train_loss": loss_sum / seen,
            "train_acc": correct / seen,
            "epoch_seconds": seconds,
            "train_images_per_second": seen / seconds,
        }

    def validate(self) -> dict:
        probs, targets, failures = predict(
            self.forward, self.dev_loader, self.cfg, self.device, self.channels_last, self.amp_dtype
        )
        if failures:
            bad = [self.dev[i][0] + ": " + e for i, e in failures]
            raise SystemExit("dev images cannot be read; remove or fix them:\n  " + "\n  ".join(bad))
        target = torch.tensor(targets)
        m = compute_metrics(targets, probs.argmax(1).tolist(), self.splits.classes)
        nll = -torch.log(probs[torch.arange(len(target)), target].clamp(min=1e-12)).mean().item()
        return {
            "dev_loss": nll,
            "dev_acc": m["accuracy"],
            "dev_macro_f1": m["macro_f1"],
            "dev_weighted_f1": m["weighted_f1"],
        }

    def fit(self) -> None:
        args = self.args
        deadline = time.perf_counter() + args.time_budget * 60 if args.time_budget else 0.0
        for epoch in range(self.start_epoch, args.epochs + 1):
            if args.patience and self.bad_epochs >= args.patience:
                print(f"early stop: no better dev macro-F1 for {args.patience} epochs (best {self.best_f1:.4f})")
                break
            row = self.train_epoch(epoch, deadline)
            if row is None:
                self.stopped_by_budget = True
                print(
                    f"time budget of {args.time_budget:g} min reached in epoch {epoch}: last.pt saved; "
                    "continue with --resume",
                    flush=True,
                )
                return
            row.update(self.validate())
            improved = row["dev_macro_f1"] > self.best_f1
            if improved:
                self.best_f1, self.best_epoch, self.bad_epochs = row["dev_macro_f1"], epoch, 0
            else:
                self.bad_epochs += 1
            self.rows.append(row)
            self.save(epoch, improved)
            runlog.write_rows(self.run_dir / "metrics.csv", self.rows, METRIC_FIELDS)
            runlog.plot_curves(self.rows, self.run_dir / "curves.png")
            print(
                f"epoch {epoch}: train loss {row['train_loss']:.4f} acc {row['train_acc']:.3f} | "
                f"dev loss {row['dev_loss']:.4f} acc {row['dev_acc']:.3f} macro-F1 {row['dev_macro_f1']:.4f}"
                f"{' (best)' if improved else ''} | {row['epoch_seconds']:.1f} s, "
                f"{row['train_images_per_second']:.1f} img/s, {row['image_size']} px",
                flush=True,
            )
            if deadline and time.perf_counter() > deadline and epoch < args.epochs:
                self.stopped_by_budget = True
                print(f"time budget of {args.time_budget:g} min reached after epoch {epoch}; continue with --resume")
                return

    def final_evaluation(self) -> dict:
        """``best.pt`` on the validation split, once; written to ``final.json`` and into best.pt's record."""
        ckpt = load_checkpoint(self.run_dir / "best.pt")
        model, labels, cfg = build_model(ckpt)
        model.to(self.device, memory_format=self.memory_format)
        loader = eval_loader(self.splits.val, cfg, self.args.batch_size * 2, self.args.workers, self.device)
        probs, targets, failures = predict(model, loader, cfg, self.device, self.channels_last, self.amp_dtype)
        m = compute_metrics(targets, probs.argmax(1).tolist(), labels)
        m["n_failed"] = len(failures)
        m["chosen_by"] = "dev split" if self.dev is not self.splits.val else "validation split itself"
        (self.run_dir / "final.json").write_text(json.dumps(m, indent=2) + "\n", encoding="utf-8")
        ckpt["training"]["final_val"] = m
        tmp = self.run_dir / "best.pt.tmp"
        torch.save(ckpt, tmp)
        tmp.replace(self.run_dir / "best.pt")
        return m


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
