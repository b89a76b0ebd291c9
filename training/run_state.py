"""One training run's state: built from the arguments (data splits, model, optimiser, cache), recorded into its
checkpoints and restored from ``last.pt`` by ``--resume``. ``training.loop`` trains it; ``training.train`` is the
command.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from torch import nn

from handlers.model import ArtVGG, load_checkpoint, save_checkpoint
from handlers.precision import native_autocast_dtype
from handlers.preprocessing import PreprocessConfig
from training import runlog, schedule
from training.cache import ImageCache, ViewConfig
from training.data import class_counts, content_digests, run_splits
from training.distill import FeatureMatch
from training.evaluate import default_workers, eval_loader
from training.lineage import machine
from training.teacher_model import load_teachers  # its model code is imported only when a teacher is built
from training.weights import freeze_blocks, load_init, load_pretrained


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


class RunState:
    """One run: data, model, optimiser and the state that --resume restores (the loop is ``training.loop``)."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.run_dir = Path(args.output)
        self.device, self.amp_dtype, self.channels_last = resolve_precision(args)
        self.machine = machine(self.device)  # for the record: the model card says where each stage trained
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
        self.feature_match = None
        if args.kd_features:
            if self.teacher is None:
                raise SystemExit("--kd-features matches a teacher's embedding; give --teacher")
            self.feature_match = FeatureMatch(self.model, self.teacher).to(self.device)
        trained = nn.ModuleList(m for m in (self.model, self.feature_match) if m is not None)
        self.optimizer = schedule.make_optimizer(args, trained)  # the model's parameters first, as without a map
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
            "machine": self.machine,
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
            "feature_match": self.feature_match.state_dict() if self.feature_match is not None else None,
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
        if self.feature_match is not None:
            if state.get("feature_match") is None:
                raise SystemExit(f"--resume: {path} was saved without --kd-features; resume with the same options")
            self.feature_match.load_state_dict(state["feature_match"])
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
