"""The machine a benchmark ran on, recorded beside its figures: CPU model and the flags that pick the compute path,
cores, memory, GPU, torch and the load average while it ran."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import psutil
import torch

from training.lineage import cpu_model

SHARED_NOTE = "figures vary with other load on the machine (see load_average_1_5_15m); ratios are same-run"
# CPU flags that decide the compute path (handlers/precision.py: bf16 where native) and a forward pass's speed.
RELEVANT_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_fp16", "amx_bf16", "amx_tile")


def cpu_flags() -> list[str]:
    """The :data:`RELEVANT_FLAGS` this CPU has (from /proc/cpuinfo; empty where there is none)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    line = next((line for line in text.splitlines() if line.startswith("flags")), "")
    present = set(line.split(":", 1)[-1].split())
    return [flag for flag in RELEVANT_FLAGS if flag in present]


def gpu() -> str | None:
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def machine() -> dict:
    """What a benchmark's summary.json records as ``machine``."""
    cpu = cpu_model()
    return {
        "cpu": cpu,
        "cpu_flags": cpu_flags(),
        "gpu": gpu(),
        "cores": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "load_average_1_5_15m": [round(x, 2) for x in os.getloadavg()],
        "note": SHARED_NOTE,
    }
