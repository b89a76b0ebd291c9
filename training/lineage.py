"""Where a trained checkpoint came from, for its model card: the machine, the chain of training stages
(``--init-from``), the teachers they distilled and the training time of it all.

A run's record names the checkpoint it started from, and that checkpoint's record is copied into it
(``training.weights.load_init``), so the chain back to the from-scratch stage travels with every checkpoint.
Teachers are referred to by path; their recipe and figures are read from the teacher checkpoint when it is there
at export time.
"""

from __future__ import annotations

import platform
from pathlib import Path

import torch

TEACHER_RECIPE = ("epochs", "views", "min_scale", "opt", "lr", "weight_decay", "label_smoothing", "class_weights")


def cpu_model() -> str:
    """The CPU's model name as ``lscpu`` shows it (from /proc/cpuinfo), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(device: torch.device | None = None) -> str:
    """The CPU's model name and torch thread count, and the GPU's name when ``device`` is CUDA."""
    cpu = f"{cpu_model()}, {torch.get_num_threads()} threads"
    if device is not None and device.type == "cuda":
        return f"{cpu}; GPU {torch.cuda.get_device_name(device)}"
    return cpu


def stages(record: dict) -> list[dict]:
    """The record's chain of training stages, oldest first: what each started from, trained and cost."""
    chain, node, name = [], record, "this run"
    while node:
        args = node.get("args") or {}
        chain.append(
            {
                "checkpoint": name,
                "sha256": node.get("sha256"),
                "checkpoint_epoch": node.get("epoch"),
                "image_size": node.get("image_size", args.get("image_size")),
                "teacher": node.get("teacher"),
                "train_seconds": node.get("train_seconds"),
                "machine": node.get("machine"),
                "best_dev_macro_f1": (node.get("best_dev") or {}).get("dev_macro_f1"),
            }
        )
        parent = node.get("init_from")
        name = parent.get("path") if parent else None
        node = parent
    return chain[::-1]


def teacher_summary(path: str) -> dict:
    """A teacher checkpoint's recipe and figures; just its path when the file is not here."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError) as e:
        return {"path": path, "note": f"not readable at export ({type(e).__name__})"}
    record = ckpt.get("training") or {}
    args = record.get("args") or {}
    figures = {
        split: {"macro_f1": record[split]["macro_f1"], "accuracy": record[split]["accuracy"]}
        for split in ("dev", "val")
        if record.get(split)
    }
    return {
        "path": path,
        "variant": ckpt.get("variant"),
        "weights": record.get("source"),
        "best_epoch": record.get("epoch"),
        "recipe": {k: args[k] for k in TEACHER_RECIPE if k in args},
        "figures": figures,
        "train_seconds": record.get("train_seconds"),
        "machine": record.get("machine"),
    }


def teachers_of(chain: list[dict]) -> list[str]:
    """Every teacher path the stages name, once each, in order."""
    seen: list[str] = []
    for stage in chain:
        teacher = stage["teacher"]
        for path in [teacher] if isinstance(teacher, str) else teacher or []:
            if path not in seen:
                seen.append(path)
    return seen


def provenance(record: dict) -> dict:
    """The card's ``provenance``: stages, teachers and the training seconds they add up to. ``train_seconds_total``
    is None when any part's time is unknown; ``train_seconds_known`` then sums the rest and ``time_unknown`` names
    the parts left out."""
    chain = stages(record)
    teachers = [teacher_summary(p) for p in teachers_of(chain)]
    parts = [(s["checkpoint"], s["train_seconds"]) for s in chain] + [
        (t["path"], t.get("train_seconds")) for t in teachers
    ]
    unknown = [name for name, seconds in parts if seconds is None]
    known = sum(seconds for _, seconds in parts if seconds is not None)
    return {
        "stages": chain,
        "teachers": teachers,
        "train_seconds_total": None if unknown else known,
        "train_seconds_known": known,
        "time_unknown": unknown,
    }
