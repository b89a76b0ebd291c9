"""Classification metrics and their pictures: scikit-learn's report, the confusion matrix, the reliability diagram."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from sklearn.metrics import accuracy_score, classification_report, confusion_matrix


def compute_metrics(y_true: Sequence[int], y_pred: Sequence[int], labels: Sequence[str]) -> dict:
    """Classification metrics from scikit-learn for predictions given as label indices.

    Averages run over the classes that occur in ``y_true`` or ``y_pred`` (scikit-learn's default), so
    evaluating on a folder with only some of the model's classes does not count absent ones as F1 0.
    ``confusion`` is over all of ``labels`` (rows: true class, columns: predicted class).
    """
    if len(y_true) == 0:
        raise ValueError("no image was classified, so there are no metrics")
    present = sorted(set(y_true) | set(y_pred))
    report = classification_report(
        y_true, y_pred, labels=present, target_names=[labels[i] for i in present], output_dict=True, zero_division=0
    )
    per_class = {
        labels[i]: {k: report[labels[i]][k] for k in ("precision", "recall", "f1-score", "support")} for i in present
    }
    per_class = {
        name: {"precision": m["precision"], "recall": m["recall"], "f1": m["f1-score"], "support": int(m["support"])}
        for name, m in per_class.items()
    }
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(report["macro avg"]["f1-score"]),
        "weighted_f1": float(report["weighted avg"]["f1-score"]),
        "per_class": per_class,
        "n_images": len(y_true),
        "labels": list(labels),
        "confusion": confusion_matrix(y_true, y_pred, labels=list(range(len(labels)))).tolist(),
    }


def text_report(y_true: Sequence[int], y_pred: Sequence[int], labels: Sequence[str]) -> str:
    present = sorted(set(y_true) | set(y_pred))
    return classification_report(
        y_true, y_pred, labels=present, target_names=[labels[i] for i in present], digits=3, zero_division=0
    )


def confusion_text(confusion: list[list[int]], labels: Sequence[str]) -> str:
    first = max(len("true \\ predicted"), *(len(label) for label in labels))
    width = max(6, *(len(label) for label in labels)) + 1
    head = "true \\ predicted".ljust(first) + "".join(label.rjust(width) for label in labels)
    rows = [
        label.ljust(first) + "".join(str(n).rjust(width) for n in row)
        for label, row in zip(labels, confusion, strict=True)
    ]
    return "\n".join([head, *rows])


def plot_confusion(confusion: list[list[int]], labels: Sequence[str], path: str | Path, title: str) -> None:
    """Confusion matrix as a PNG: counts in the cells, colour by the share of the true class (row)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = np.asarray(confusion)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    size = 1.2 + 0.9 * len(labels)
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    for (r, c), n in np.ndenumerate(counts):
        ax.text(c, r, str(n), ha="center", va="center", color="white" if shares[r, c] > 0.5 else "black")
    fig.colorbar(image, ax=ax, label="share of the true class")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_reliability(confidence: dict, path: str | Path, title: str) -> None:
    """Reliability diagram (``training.confidence.calibration_report``'s tables): the share right against the mean
    top-1 probability per bin, as served and (for a calibrated model) before calibration; the diagonal is perfect."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.8, 4.8))
    ax.plot([0, 1], [0, 1], color="#999", linestyle=":", label="perfect")
    curves = [("reliability_uncalibrated", "before calibration", "#aaa"), ("reliability", "as served", "#4a7ab5")]
    for key, name, colour in curves:
        rows = [r for r in confidence.get(key) or [] if r["n"]]
        if rows and (key == "reliability" or confidence.get("calibrated")):
            ece = confidence["ece" if key == "reliability" else "ece_uncalibrated"]
            xs, ys = [r["confidence"] for r in rows], [r["accuracy"] for r in rows]
            ax.plot(xs, ys, marker="o", color=colour, label=f"{name} (ECE {ece:.3f})")
    ax.set_xlabel("mean top-1 probability")
    ax.set_ylabel("share right")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
