"""What a run writes beside its checkpoints: ``metrics.csv`` (one row per epoch), ``curves.png``, timings."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path


def hms(seconds: float) -> str:
    seconds = int(max(0, seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def read_rows(path: Path) -> list[dict]:
    """``metrics.csv`` as dicts: ``epoch`` as int, every other column as float (empty cells as None)."""
    if not path.exists():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        return [
            {k: int(v) if k == "epoch" else (float(v) if v != "" else None) for k, v in row.items()}
            for row in csv.DictReader(f)
        ]


def write_rows(path: Path, rows: Sequence[dict], fields: Sequence[str] | None = None) -> None:
    """Rewrite ``metrics.csv`` with ``fields`` (default: the first row's keys) as columns."""
    fields = list(fields or (rows[0].keys() if rows else ["epoch"]))
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(path)


def plot_curves(rows: Sequence[dict], path: Path, split: str = "dev") -> None:
    """Loss (left) and accuracy / macro-F1 (right) per epoch, for the training views and the ``split``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    left.plot(epochs, [r["train_loss"] for r in rows], "o-", label="train loss (augmented)")
    left.plot(epochs, [r[f"{split}_loss"] for r in rows], "o-", label=f"{split} loss (NLL)")
    left.set_xlabel("epoch")
    left.legend()
    right.plot(epochs, [r["train_acc"] for r in rows], "o-", label="train accuracy (augmented)")
    right.plot(epochs, [r[f"{split}_acc"] for r in rows], "o-", label=f"{split} accuracy")
    right.plot(epochs, [r[f"{split}_macro_f1"] for r in rows], "o-", label=f"{split} macro-F1")
    right.set_xlabel("epoch")
    right.set_ylim(0, 1)
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
