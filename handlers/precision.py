"""Which reduced precision this machine runs natively (detected, never guessed).

bf16 pays on a CPU only where the instructions exist (AVX512_BF16 or AMX-BF16); elsewhere PyTorch emulates it
and it is slower than fp32. CUDA devices report their own support.
"""

from __future__ import annotations

import functools
import platform
from pathlib import Path

import torch

#: /proc/cpuinfo flags that mean native bf16 arithmetic.
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


@functools.cache
def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> frozenset[str]:
    """The CPU feature flags Linux reports (empty elsewhere or when unreadable)."""
    if platform.system() != "Linux":
        return frozenset()
    try:
        text = Path(cpuinfo).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.partition(":")[2].split())
    return frozenset()


def cpu_has_native_bf16(flags: frozenset[str] | None = None) -> bool:
    """True when the CPU has AVX512_BF16 or AMX-BF16 instructions."""
    flags = cpu_flags() if flags is None else flags
    return any(f in flags for f in BF16_CPU_FLAGS)


def native_autocast_dtype(device: torch.device) -> torch.dtype | None:
    """The reduced dtype worth autocasting to on ``device``; None means fp32 is the fast path."""
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and cpu_has_native_bf16():
        return torch.bfloat16
    return None
