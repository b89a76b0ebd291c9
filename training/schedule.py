"""Optimiser and learning-rate schedule shared by the student (``training.train``) and the teacher."""

from __future__ import annotations

import argparse
import math

import torch
from torch import nn

from training.data import class_counts


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The optimisation flags, as an argument group."""
    g = p.add_argument_group("optimisation")
    a = g.add_argument
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


def make_criterion(args: argparse.Namespace, train: list, classes: list[str], device: torch.device) -> nn.Module:
    """Cross-entropy with ``--label-smoothing``, weighted by class under ``--class-weights balanced``."""
    weight = None
    if args.class_weights == "balanced":
        counts = torch.tensor(list(class_counts(train, classes).values()), dtype=torch.float32)
        weight = (counts.sum() / (len(counts) * counts.clamp(min=1))).to(device)
    return nn.CrossEntropyLoss(weight=weight, label_smoothing=args.label_smoothing)


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


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def size_at(args: argparse.Namespace, epoch: int) -> int:
    """Training crop side in ``epoch`` (1-based): grows linearly in steps of 16 under --progressive-from."""
    if not args.progressive_from or args.progressive_from >= args.image_size:
        return args.image_size
    until = max(1, round(args.epochs * args.progressive_until))
    if epoch >= until:
        return args.image_size
    size = args.progressive_from + (args.image_size - args.progressive_from) * (epoch - 1) / max(1, until - 1)
    return min(args.image_size, int(round(size / 16) * 16))
