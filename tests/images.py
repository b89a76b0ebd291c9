"""Test images generated in memory (nothing checked in): every format, mode and oddity the service meets."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from loadtests.harness import LABELS

#: The art5 classes, the labels of the random-weight test fixtures (``loadtests.harness.LABELS``).
ART5_LABELS = LABELS


def pattern(size: tuple[int, int] = (96, 64), seed: int = 0) -> Image.Image:
    """A deterministic, non-uniform RGB picture (gradients plus noise), so crops and rotations differ."""
    w, h = size
    rng = np.random.default_rng(seed)
    x = np.linspace(0, 255, w, dtype=np.float32)[None, :, None]
    y = np.linspace(0, 255, h, dtype=np.float32)[:, None, None]
    arr = np.concatenate([np.broadcast_to(x, (h, w, 1)), np.broadcast_to(y, (h, w, 1)), (x + y) / 2 % 256], axis=2)
    arr = np.clip(arr + rng.normal(0, 12, arr.shape), 0, 255).astype(np.uint8)
    return Image.fromarray(arr, "RGB")


def encode(img: Image.Image, fmt: str = "JPEG", **params) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **params)
    return buf.getvalue()


def jpeg(size: tuple[int, int] = (96, 64), seed: int = 0, **params) -> bytes:
    return encode(pattern(size, seed), "JPEG", quality=90, **params)


def corrupt_jpeg() -> bytes:
    """A JPEG header followed by garbage: identifies as JPEG, fails to decode."""
    good = jpeg()
    return good[:200] + bytes(range(256)) * 8


def png_bomb(side: int = 20000) -> bytes:
    """A few-KB PNG that claims side x side pixels (a decompression bomb)."""
    img = Image.new("1", (side, side))
    return encode(img, "PNG", optimize=True)
