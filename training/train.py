"""Train an ArtVGG classifier on any ImageFolder directory.

    python -m training.train --data ../shared/data/art5 --output runs/art5
    python -m training.train --config training/configs/art5.yaml --epochs 5     # flags override the YAML
    python -m training.train --output runs/art5 --resume                         # continue from last.pt

The label set is the sorted class folder names. ``DATA/train`` and ``DATA/val`` are used when present,
else a stratified validation split with a fixed seed. The run directory gets ``args.yaml`` (the
resolved arguments), ``metrics.csv`` (one row per epoch), ``best.pt`` (best validation macro-F1, with
a ``training`` record that the serving tools require), ``last.pt`` (for ``--resume``) and
``curves.png``. Validation uses the serving preprocessing (``preprocess_bytes`` + ``normalize``).
"""

from __future__ import annotations

import argparse
import csv
import math
import statistics
import sys
import time
from pathlib import Path

import torch
import yaml
from torch import nn

from handlers.model import ARCHS, IMAGENET_WEIGHTS, ArtVGG, load_checkpoint, save_checkpoint
from handlers.preprocessing import PreprocessConfig, normalize
from training import DATA_DIR
from training.data import Splits, TrainImages, art_augmentation, class_counts, find_splits
from training.evaluate import compute_metrics, default_workers, eval_loader, predict

METRIC_FIELDS = (
    "epoch",
    "lr",
    "train_loss",
    "train_acc",
    "val_loss",
    "val_acc",
    "val_macro_f1",
    "val_weighted_f1",
    "epoch_seconds",
    "train_images_per_second",
)


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    a = p.add_argument
    a(
        "--config",
        default=None,
        help="YAML file whose keys (flag names) set defaults; flags override it (default: none)",
    )
    a(
        "--data",
        default=str(DATA_DIR),
        help="ImageFolder directory, optionally with train/ and val/ (default: %(default)s)",
    )
    a("--output", default=None, help="run directory (default: runs/<data folder name>)")
    a("--val-fraction", type=float, default=0.1, help="validation share when DATA has no val/ (default: %(default)s)")
    a("--limit-per-class", type=int, default=0, help="use at most N images per class and split, 0 = all (default: 0)")
    a("--arch", default="vgg16_bn", choices=sorted(ARCHS), help="model preset (default: %(default)s)")
    a(
        "--pretrained",
        default="none",
        help="'imagenet' (torchvision download), a local state-dict PATH, or 'none' for from-scratch (default: none)",
    )
    a("--freeze-blocks", type=int, default=0, help="freeze the first N convolution blocks (default: 0)")
    a("--image-size", type=int, default=224, help="crop side fed to the model (default: %(default)s)")
    a(
        "--resize",
        type=int,
        default=256,
        help="shorter side before the centre crop at evaluation (default: %(default)s)",
    )
    a("--augment", default="art", choices=("art", "none"), help="training augmentation (default: %(default)s)")
    a("--min-scale", type=float, default=0.35, help="smallest random-resized-crop area share (default: %(default)s)")
    a("--epochs", type=int, default=40, help="epochs to train (default: %(default)s)")
    a("--batch-size", type=int, default=32, help="images per step (default: %(default)s)")
    a("--opt", default="sgd", choices=("sgd", "adamw"), help="optimiser (default: %(default)s)")
    a("--lr", type=float, default=0.02, help="peak learning rate (default: %(default)s)")
    a("--momentum", type=float, default=0.9, help="SGD momentum (default: %(default)s)")
    a("--weight-decay", type=float, default=5e-4, help="weight decay (default: %(default)s)")
    a("--sched", default="cosine", choices=("cosine", "step", "constant"), help="LR schedule (default: %(default)s)")
    a("--warmup-epochs", type=float, default=1.0, help="linear LR warm-up length (default: %(default)s)")
    a("--step-size", type=int, default=10, help="epochs between LR drops for --sched step (default: %(default)s)")
    a("--gamma", type=float, default=0.1, help="LR factor per drop for --sched step (default: %(default)s)")
    a("--min-lr", type=float, default=0.0, help="final LR of the cosine schedule (default: %(default)s)")
    a("--label-smoothing", type=float, default=0.1, help="cross-entropy label smoothing (default: %(default)s)")
    a(
        "--class-weights",
        default="none",
        choices=("none", "balanced"),
        help="'balanced' weights the loss by N/(classes*count) for imbalanced folders (default: %(default)s)",
    )
    a(
        "--patience",
        type=int,
        default=10,
        help="stop after N epochs without a better val macro-F1, 0 = never (default: 10)",
    )
    a("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    a(
        "--amp",
        default="auto",
        choices=("auto", "on", "off"),
        help="bf16 mixed precision, CUDA only (default: auto = on CUDA)",
    )
    a(
        "--channels-last",
        default="auto",
        choices=("auto", "on", "off"),
        help="channels_last memory format, CUDA only (default: auto = on CUDA)",
    )
    a("--compile", action="store_true", help="torch.compile the model (default: off)")
    a(
        "--workers",
        type=int,
        default=None,
        help="loader processes (default: min(8, CPUs) on CUDA; 0 on CPU, where loader processes and the "
        "spinning OpenMP compute threads fight over the few cores)",
    )
    a("--seed", type=int, default=0, help="seed for split, shuffling, augmentation and init (default: %(default)s)")
    a("--resume", action="store_true", help="continue from OUTPUT/last.pt (default: off)")
    a("--log-every", type=int, default=20, help="progress line every N steps (default: %(default)s)")
    a(
        "--max-steps",
        type=int,
        default=0,
        help="timing run: stop after N steps, print the step time, skip validation and checkpoints (default: 0 = off)",
    )
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Flags over ``--config`` YAML over built-in defaults."""
    parser = get_args_parser()
    pre, _ = parser.parse_known_args(argv)
    if pre.config:
        values = yaml.safe_load(Path(pre.config).read_text(encoding="utf-8")) or {}
        known = {a.dest for a in parser._actions}
        values = {str(k).replace("-", "_"): v for k, v in values.items()}
        unknown = sorted(set(values) - known - {"config"})
        if unknown:
            raise SystemExit(
                f"{pre.config}: unknown keys {unknown}; use the flag names of `python -m training.train -h`"
            )
        parser.set_defaults(**values)
    args = parser.parse_args(argv)
    if args.output is None:
        args.output = str(Path("runs") / Path(args.data).resolve().name)
    return args


def load_pretrained(model: ArtVGG, spec: str) -> str:
    """Copy convolution weights (``features.*``) into ``model``; returns a description for the record."""
    if spec == "none":
        return "none (Kaiming initialisation, trained from scratch)"
    alternatives = "pass --pretrained PATH (a local state dict) or train from scratch with --pretrained none"
    if spec == "imagenet":
        name = IMAGENET_WEIGHTS.get(model.arch)
        if name is None:
            raise SystemExit(f"there are no ImageNet weights for --arch {model.arch}; {alternatives}")
        import torchvision

        try:
            state = torchvision.models.get_weight(name).get_state_dict(progress=True)
        except Exception as e:  # offline, proxy, disk: all end the same way
            raise SystemExit(
                f"cannot download the ImageNet weights {name} ({type(e).__name__}: {e}); {alternatives}"
            ) from None
        source = f"imagenet ({name})"
    else:
        path = Path(spec)
        if not path.is_file():
            raise SystemExit(f"--pretrained {spec}: no such file; use 'imagenet', a state-dict PATH or 'none'")
        state = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
        source = str(path)
    features = {k: v for k, v in state.items() if k.startswith("features.")}
    own = model.state_dict()
    wanted = {k for k in own if k.startswith("features.")}
    bad = sorted(k for k, v in features.items() if k not in own or own[k].shape != v.shape)
    if not features or bad or set(features) != wanted:
        missing = sorted(wanted - set(features))
        raise SystemExit(
            f"--pretrained {source} does not fit --arch {model.arch}: "
            f"{len(bad)} mismatched (e.g. {bad[:3]}), {len(missing)} missing (e.g. {missing[:3]}) feature tensors"
        )
    model.load_state_dict(features, strict=False)
    return f"{source}: {len(features)} feature tensors"


def freeze_blocks(model: ArtVGG, n: int) -> list[nn.Module]:
    """Stop gradients in the first ``n`` convolution blocks; returns them (kept in eval mode while training)."""
    blocks = model.conv_blocks()
    if not 0 <= n <= len(blocks):
        raise SystemExit(f"--freeze-blocks {n}: {model.arch} has {len(blocks)} convolution blocks")
    for block in blocks[:n]:
        block.requires_grad_(False)
    return blocks[:n]


def make_optimizer(args: argparse.Namespace, model: nn.Module) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim > 1]
    no_decay = [p for p in params if p.ndim <= 1]  # biases and BN: no weight decay
    groups = [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if args.opt == "sgd":
        return torch.optim.SGD(groups, lr=args.lr, momentum=args.momentum, nesterov=True)
    return torch.optim.AdamW(groups, lr=args.lr)


def lr_at(args: argparse.Namespace, step: int, steps_per_epoch: int) -> float:
    """Learning rate at global ``step`` (0-based): linear warm-up, then the chosen schedule."""
    warmup = int(args.warmup_epochs * steps_per_epoch)
    if step < warmup:
        return args.lr * (step + 1) / warmup
    if args.sched == "constant":
        return args.lr
    if args.sched == "step":
        return args.lr * args.gamma ** (step // steps_per_epoch // args.step_size)
    total = max(1, args.epochs * steps_per_epoch - warmup)
    progress = min(1.0, (step - warmup) / total)
    return args.min_lr + (args.lr - args.min_lr) * 0.5 * (1 + math.cos(math.pi * progress))


def make_criterion(args: argparse.Namespace, splits: Splits, device: torch.device) -> nn.Module:
    weight = None
    if args.class_weights == "balanced":
        counts = torch.tensor(list(class_counts(splits.train, splits.classes).values()), dtype=torch.float32)
        weight = (counts.sum() / (len(counts) * counts.clamp(min=1))).to(device)
    return nn.CrossEntropyLoss(weight=weight, label_smoothing=args.label_smoothing)


def hms(seconds: float) -> str:
    seconds = int(max(0, seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def resolve_device(args: argparse.Namespace) -> tuple[torch.device, torch.dtype | None, bool]:
    """The device, the autocast dtype (None = fp32) and whether to use channels_last."""
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    cuda = device.type == "cuda"
    for flag in ("amp", "channels_last"):
        if getattr(args, flag) == "on" and not cuda:
            raise SystemExit(f"--{flag.replace('_', '-')} on needs a CUDA device; this run is on {device}")
    amp = cuda and args.amp != "off"
    amp_dtype = (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16) if amp else None
    return device, amp_dtype, cuda and args.channels_last != "off"


class Trainer:
    """One run: data, model, optimiser and the epoch loop; state that --resume restores lives here."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.run_dir = Path(args.output)
        self.device, self.amp_dtype, self.channels_last = resolve_device(args)
        if args.workers is None:
            args.workers = default_workers(self.device)
        torch.manual_seed(args.seed)
        self.splits = find_splits(args.data, args.val_fraction, args.seed, args.limit_per_class)
        self.cfg = PreprocessConfig(resize=args.resize, crop=args.image_size)
        self.model = ArtVGG(len(self.splits.classes), args.arch)
        self.pretrained = load_pretrained(self.model, args.pretrained)
        if args.freeze_blocks and args.pretrained == "none":
            raise SystemExit("--freeze-blocks with --pretrained none would freeze random weights; load weights first")
        self.frozen = freeze_blocks(self.model, args.freeze_blocks)
        self.model.to(self.device, memory_format=torch.channels_last if self.channels_last else torch.contiguous_format)
        self.forward = torch.compile(self.model) if args.compile else self.model
        self.optimizer = make_optimizer(args, self.model)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.criterion = make_criterion(args, self.splits, self.device)
        self.train_loader = torch.utils.data.DataLoader(
            TrainImages(
                self.splits.train,
                self.cfg,
                art_augmentation(self.cfg, args.min_scale) if args.augment == "art" else None,
            ),
            batch_size=args.batch_size,
            shuffle=True,
            num_workers=args.workers,
            pin_memory=self.device.type == "cuda",
            persistent_workers=args.workers > 0,
            generator=torch.Generator(),
            drop_last=len(self.splits.train) > args.batch_size,  # no 1-image tail batch for BatchNorm
        )
        self.val_loader = eval_loader(self.splits.val, self.cfg, args.batch_size * 2, args.workers, self.device)
        self.rows: list[dict] = []
        self.start_epoch, self.best_f1, self.best_epoch, self.bad_epochs = 1, -1.0, 0, 0
        self.step_seconds: list[float] = []

    # --- state -------------------------------------------------------------------------------
    def record(self, epoch: int) -> dict:
        """The ``training`` entry of a checkpoint (serving tools refuse checkpoints without one)."""
        best = next((r for r in self.rows if r["epoch"] == self.best_epoch), {})
        return {
            "epoch": epoch,
            "epochs": self.args.epochs,
            "best_epoch": self.best_epoch,
            "best_val": {k: best.get(k) for k in ("val_acc", "val_macro_f1", "val_weighted_f1", "val_loss")},
            "data": str(Path(self.args.data).resolve()),
            "split": self.splits.source,
            "class_counts": {
                "train": class_counts(self.splits.train, self.splits.classes),
                "val": class_counts(self.splits.val, self.splits.classes),
            },
            "pretrained": self.pretrained,
            "args": vars(self.args),
            "torch": str(torch.__version__),
            "device": str(self.device),
        }

    def save(self, epoch: int, improved: bool) -> None:
        record = self.record(epoch)
        resume = {
            "epoch": epoch,
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "best_f1": self.best_f1,
            "best_epoch": self.best_epoch,
            "bad_epochs": self.bad_epochs,
        }
        tmp = self.run_dir / "last.pt.tmp"
        save_checkpoint(tmp, self.model, self.splits.classes, self.cfg, extra={"training": record, "resume": resume})
        tmp.replace(self.run_dir / "last.pt")
        if improved:
            save_checkpoint(
                self.run_dir / "best.pt", self.model, self.splits.classes, self.cfg, extra={"training": record}
            )

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
        self.start_epoch = state["epoch"] + 1
        self.best_f1, self.best_epoch, self.bad_epochs = state["best_f1"], state["best_epoch"], state["bad_epochs"]
        self.rows = [r for r in read_metrics(self.run_dir / "metrics.csv") if r["epoch"] <= state["epoch"]]
        print(f"resumed from {path} after epoch {state['epoch']} (best macro-F1 {self.best_f1:.4f})")

    # --- loop --------------------------------------------------------------------------------
    def train_epoch(self, epoch: int, run_start: float) -> dict:
        args, steps = self.args, len(self.train_loader)
        self.model.train()
        for block in self.frozen:
            block.eval()  # frozen BatchNorm keeps its statistics
        torch.manual_seed(args.seed * 1000 + epoch)  # dropout and augmentation (workers=0): same after --resume
        self.train_loader.generator.manual_seed(args.seed * 1000 + epoch)
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        seen, start, last = 0, time.perf_counter(), time.perf_counter()
        for i, (x, y) in enumerate(self.train_loader):
            lr = lr_at(args, (epoch - 1) * steps + i, steps)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
                logits = self.forward(normalize(x, self.cfg))
                loss = self.criterion(logits.float(), y)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            loss_sum += loss.detach() * len(y)
            correct += (logits.argmax(1) == y).sum()
            seen += len(y)
            if args.max_steps:
                if self.device.type == "cuda":
                    torch.cuda.synchronize()
                now = time.perf_counter()
                self.step_seconds.append(now - last)
                last = now
                if len(self.step_seconds) >= args.max_steps:
                    break
            if (i + 1) % args.log_every == 0 or i + 1 == steps:
                self.progress(epoch, i + 1, steps, seen, start, run_start, loss_sum.item() / seen)
        seconds = time.perf_counter() - start
        return {
            "epoch": epoch,
            "lr": lr,
            "train_loss": loss_sum.item() / seen,
            "train_acc": correct.item() / seen,
            "epoch_seconds": seconds,
            "train_images_per_second": seen / seconds,
        }

    def progress(
        self, epoch: int, step: int, steps: int, seen: int, start: float, run_start: float, loss: float
    ) -> None:
        elapsed = time.perf_counter() - start
        epoch_eta = elapsed / step * (steps - step)
        done_epochs = epoch - self.start_epoch
        per_epoch = (time.perf_counter() - run_start - elapsed) / done_epochs if done_epochs else elapsed / step * steps
        run_eta = epoch_eta + per_epoch * (self.args.epochs - epoch)
        print(
            f"epoch {epoch}/{self.args.epochs} step {step}/{steps} loss {loss:.4f} "
            f"{seen / elapsed:.1f} img/s  epoch ETA {hms(epoch_eta)}  run ETA {hms(run_eta)}",
            flush=True,
        )

    def validate(self) -> dict:
        probs, targets, failures = predict(
            self.forward, self.val_loader, self.cfg, self.device, self.channels_last, self.amp_dtype
        )
        if failures:
            bad = [self.splits.val[i][0] + ": " + e for i, e in failures]
            raise SystemExit("validation images cannot be read; remove or fix them:\n  " + "\n  ".join(bad))
        target = torch.tensor(targets)
        m = compute_metrics(targets, probs.argmax(1).tolist(), self.splits.classes)
        nll = -torch.log(probs[torch.arange(len(target)), target].clamp(min=1e-12)).mean().item()
        return {
            "val_loss": nll,
            "val_acc": m["accuracy"],
            "val_macro_f1": m["macro_f1"],
            "val_weighted_f1": m["weighted_f1"],
        }

    def fit(self) -> None:
        args = self.args
        run_start = time.perf_counter()
        for epoch in range(self.start_epoch, args.epochs + 1):
            row = self.train_epoch(epoch, run_start)
            if args.max_steps:
                return
            row.update(self.validate())
            improved = row["val_macro_f1"] > self.best_f1
            if improved:
                self.best_f1, self.best_epoch, self.bad_epochs = row["val_macro_f1"], epoch, 0
            else:
                self.bad_epochs += 1
            self.rows.append(row)
            self.save(epoch, improved)
            write_metrics(self.run_dir / "metrics.csv", self.rows)
            plot_curves(self.rows, self.run_dir / "curves.png")
            print(
                f"epoch {epoch}: train loss {row['train_loss']:.4f} acc {row['train_acc']:.3f} | "
                f"val loss {row['val_loss']:.4f} acc {row['val_acc']:.3f} macro-F1 {row['val_macro_f1']:.4f}"
                f"{' (best)' if improved else ''} | {row['epoch_seconds']:.1f} s, "
                f"{row['train_images_per_second']:.1f} img/s",
                flush=True,
            )
            if args.patience and self.bad_epochs >= args.patience:
                print(f"early stop: no better val macro-F1 for {args.patience} epochs (best {self.best_f1:.4f})")
                break


def read_metrics(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        return [{k: int(v) if k == "epoch" else float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def write_metrics(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=METRIC_FIELDS)
        writer.writeheader()
        writer.writerows({k: row[k] for k in METRIC_FIELDS} for row in rows)


def plot_curves(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    left.plot(epochs, [r["train_loss"] for r in rows], "o-", label="train loss (augmented)")
    left.plot(epochs, [r["val_loss"] for r in rows], "o-", label="val loss (NLL)")
    left.set_xlabel("epoch")
    left.legend()
    right.plot(epochs, [r["train_acc"] for r in rows], "o-", label="train accuracy (augmented)")
    right.plot(epochs, [r["val_acc"] for r in rows], "o-", label="val accuracy")
    right.plot(epochs, [r["val_macro_f1"] for r in rows], "o-", label="val macro-F1")
    right.set_xlabel("epoch")
    right.set_ylim(0, 1)
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def report_timing(trainer: Trainer) -> dict:
    """Median step time after two warm-up steps, and the extrapolated epoch time (a --max-steps run)."""
    args, times = trainer.args, trainer.step_seconds
    timed = times[2:] if len(times) > 2 else times
    step = statistics.median(timed)
    epoch_images = len(trainer.splits.train)
    result = {
        "arch": args.arch,
        "device": str(trainer.device),
        "batch_size": args.batch_size,
        "image_size": args.image_size,
        "steps_timed": len(timed),
        "step_seconds_median": step,
        "step_seconds_min": min(timed),
        "step_seconds_all": times,
        "images_per_second": args.batch_size / step,
        "epoch_images": epoch_images,
        "epoch_seconds_extrapolated": step * epoch_images / args.batch_size,
        "epoch_seconds_extrapolated_from_min": min(timed) * epoch_images / args.batch_size,
    }
    print(
        f"timing: {args.arch} on {trainer.device}, batch {args.batch_size}, {args.image_size}px: median "
        f"{step:.2f} s/step over {len(timed)} steps (first {len(times) - len(timed)} excluded) = "
        f"{result['images_per_second']:.2f} img/s; one epoch of {epoch_images} images extrapolates to "
        f"{hms(result['epoch_seconds_extrapolated'])} (fastest step {min(timed):.2f} s: "
        f"{hms(result['epoch_seconds_extrapolated_from_min'])})"
    )
    (trainer.run_dir / "timing.yaml").write_text(yaml.safe_dump(result, sort_keys=False), encoding="utf-8")
    return result


def main(args: argparse.Namespace) -> Path:
    """Train as ``args`` say; returns the run directory."""
    run_dir = Path(args.output)
    if (run_dir / "last.pt").exists() and not args.resume:
        raise SystemExit(f"{run_dir} already holds a run: pass --resume to continue it, or choose another --output")
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        trainer = Trainer(args)
    except (ValueError, FileNotFoundError) as e:
        raise SystemExit(f"error: {e}") from None
    (run_dir / "args.yaml").write_text(yaml.safe_dump(vars(args), sort_keys=False), encoding="utf-8")
    if args.resume:
        trainer.restore()
    s = trainer.splits
    print(
        f"data: {s.source}; {len(s.classes)} classes {s.classes}; {len(s.train)} train / {len(s.val)} val images\n"
        f"model: {args.arch}, weights {trainer.pretrained}, {args.freeze_blocks} blocks frozen; device "
        f"{trainer.device}, amp {trainer.amp_dtype}, channels_last {trainer.channels_last}; run dir {run_dir}",
        flush=True,
    )
    trainer.fit()
    if args.max_steps:
        report_timing(trainer)
    elif trainer.best_epoch:
        print(f"best val macro-F1 {trainer.best_f1:.4f} at epoch {trainer.best_epoch}: {run_dir / 'best.pt'}")
    return run_dir


if __name__ == "__main__":
    main(parse_args(sys.argv[1:]))
