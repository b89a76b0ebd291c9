"""The training loop of one run: a step on views that depend only on (seed, epoch, step), an epoch that stops
cleanly at the time budget, the dev evaluation that picks the best epoch, and the final evaluation of ``best.pt``
on the validation split.
"""

from __future__ import annotations

import json
import time

import torch
import torch.nn.functional as F

from handlers.model import build_model, load_checkpoint
from handlers.preprocessing import normalize
from training import runlog, schedule
from training.cache import epoch_order, step_generator, view_batch
from training.distill import distillation_loss
from training.evaluate import eval_loader, predict
from training.metrics import compute_metrics
from training.run_state import RunState
from training.schedule import size_at

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


class Trainer(RunState):
    """One run and its epoch loop; the state that --resume restores lives in :class:`RunState`."""

    # --- one step ----------------------------------------------------------------------------
    def batch(self, epoch: int, step: int, order: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(student input, teacher input or empty, targets) for one step; the views depend only on (epoch, step)."""
        args = self.args
        idx = order[step * args.batch_size : (step + 1) * args.batch_size].tolist()
        size = size_at(args, epoch)
        gen = step_generator(args.seed, epoch, step)
        fraction = self.cfg.crop / self.cfg.resize
        view_size = self.teacher.image_size if self.teacher is not None else size
        threads = max(1, args.workers)  # views cut in several threads on CUDA, one on a CPU
        views = view_batch(self.cache, idx, view_size, self.views, gen, fraction, threads).to(self.device)
        student = views
        if self.teacher is not None and view_size != size:  # the student sees the teacher's view, scaled down
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
                if self.feature_match is not None:
                    loss = loss + args.kd_features * self.feature_match.loss()
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
