"""Which reduced precision this machine runs natively (detected, never guessed).

bf16 pays on a CPU only where the instructions exist (AVX512_BF16 or AMX-BF16); elsewhere PyTorch emulates it
and it is slower than fp32. CUDA devices report their own support.
"""

from __future__ import annotations

import functools
import os
import platform
from collections.abc import Mapping
from dataclasses import dataclass
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


#: Serving precision settings (model-config.yaml ``handler.precision``, or ``ARTSERVE_PRECISION``).
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
_NAMES = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}


@dataclass(frozen=True)
class Precision:
    """How a model runs: ``dtype`` None = fp32; ``channels_last`` memory format."""

    name: str
    dtype: torch.dtype | None
    channels_last: bool

    def __str__(self) -> str:
        return f"{self.name}{' + channels_last' if self.channels_last else ''}"


FP32 = Precision("fp32", None, False)


def precision_of(dtype: torch.dtype | None, channels_last: bool) -> Precision:
    """The :class:`Precision` of an autocast dtype (None = fp32) and a layout."""
    return Precision(_NAMES[dtype], dtype, channels_last)


def _switch(raw: object, what: str) -> bool | None:
    """``auto`` -> None; true/false (any YAML spelling) -> bool."""
    text = str(raw).strip().lower()
    if text in ("auto", "", "none"):
        return None
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{what}={raw!r}: use auto, true or false")


def resolve_precision(config: Mapping | None, device: torch.device, env: Mapping[str, str] = os.environ) -> Precision:
    """The serving precision from ``config`` (``precision``, ``channels_last``), overridden by
    ``ARTSERVE_PRECISION`` / ``ARTSERVE_CHANNELS_LAST``. ``auto``: bf16 on a CPU with native bf16, bf16 (or fp16
    where bf16 is missing) on CUDA, fp32 otherwise; channels_last with reduced precision or on CUDA."""
    config = config or {}
    setting = str(env.get("ARTSERVE_PRECISION") or config.get("precision") or "auto").strip().lower()
    if setting not in PRECISIONS:
        raise ValueError(f"precision={setting!r}: choose one of {', '.join(PRECISIONS)} (ARTSERVE_PRECISION)")
    dtype = native_autocast_dtype(device) if setting == "auto" else _DTYPES[setting]
    if dtype == torch.float16 and device.type == "cpu":
        raise ValueError("precision=fp16 needs a CUDA device; on a CPU use bf16 (or auto)")
    layout = _switch(env.get("ARTSERVE_CHANNELS_LAST") or config.get("channels_last", "auto"), "channels_last")
    channels_last = layout if layout is not None else (dtype is not None or device.type == "cuda")
    return Precision(_NAMES[dtype], dtype, channels_last)
