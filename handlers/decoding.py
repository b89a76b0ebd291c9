"""Bytes -> checked header -> 8-bit RGB image: the decoding half of ``preprocessing``, defined once.

:func:`open_image` reads only headers and refuses, before any pixel is decoded, what the client must fix: too many
bytes or pixels (``Limits``), formats artserve does not decode, and structures that would make decoding cost far more
than the pixel count (``formats.check_structure``). :func:`load_rgb` then decodes the first frame, applies EXIF
orientation and converts any mode to 8-bit RGB, 16-bit and float modes a band of rows at a time, so that converting
costs a few megabytes beyond the decoded image and its 8-bit result (not float64 copies of the whole image).
"""

from __future__ import annotations

import io
import os
import struct
import warnings
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from handlers.errors import BadImage, PayloadTooLarge, UnsupportedMediaType
from handlers.formats import check_structure, sniff_unsupported

#: Pillow format names that artserve decodes. MPO is the multi-picture JPEG that cameras write.
SUPPORTED_FORMATS = ("JPEG", "MPO", "PNG", "WEBP", "BMP", "TIFF", "GIF")
_HIGH_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")
#: Pixels per band when converting a 16-bit or float image to 8 bits.
_BAND_PIXELS = 1 << 20


@dataclass(frozen=True)
class Limits:
    """Input limits, checked before any pixel is decoded. These defaults are the only ones: the ``handler:``
    section of deploy/config/model-config.yaml, or ``ARTSERVE_MAX_BYTES``/``ARTSERVE_MAX_PIXELS``, may change them."""

    max_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 50_000_000

    @classmethod
    def from_config(cls, config: Mapping | None = None, env: Mapping[str, str] = os.environ) -> Limits:
        """``max_bytes``/``max_pixels`` from ``config`` (model-config.yaml's ``handler:`` section),
        overridden by ``ARTSERVE_MAX_BYTES``/``ARTSERVE_MAX_PIXELS``; unset means the defaults above."""
        values = {}
        for attr in ("max_bytes", "max_pixels"):
            name = f"ARTSERVE_{attr.upper()}"
            raw = env.get(name) or (config or {}).get(attr)
            if raw is None or raw == "":
                continue
            try:
                values[attr] = int(raw)
            except ValueError:
                raise ValueError(f"{attr}={raw!r} is not an integer") from None
            if values[attr] <= 0:
                raise ValueError(f"{attr}={raw!r} must be positive")
        return cls(**values)


def open_image(data: bytes, limits: Limits = Limits()) -> Image.Image:
    """Read the image's header only (nothing decoded yet) and enforce ``limits``, the supported formats and
    ``formats.check_structure``. Raises an ``InputError`` subclass for anything the client must fix."""
    if not data:
        raise BadImage("the request has no image data (empty body)")
    if len(data) > limits.max_bytes:
        raise PayloadTooLarge(
            f"image is {len(data)} bytes; the limit is {limits.max_bytes} bytes (set ARTSERVE_MAX_BYTES to raise it)"
        )
    unsupported = sniff_unsupported(data)
    if unsupported:
        raise UnsupportedMediaType(f"{unsupported} is not supported; send JPEG, PNG, WebP, BMP, TIFF or GIF")
    check_structure(data)
    try:
        with warnings.catch_warnings():
            # Pillow's own bomb check warns; our explicit pixel limit below is the one that applies.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as e:  # over twice Pillow's own limit: refused while reading the header
        raise PayloadTooLarge(
            f"image refused before decoding ({e}); the limit is {limits.max_pixels / 1e6:g} megapixels "
            "(set ARTSERVE_MAX_PIXELS to raise it)"
        ) from None
    except UnidentifiedImageError:
        raise BadImage("the data is not a recognisable image (corrupt or not an image file)") from None
    except Exception as e:  # Pillow raises many types on malformed headers
        raise BadImage(f"the image header cannot be read: {e}") from None

    if img.format not in SUPPORTED_FORMATS:
        raise UnsupportedMediaType(f"{img.format} images are not supported; send JPEG, PNG, WebP, BMP, TIFF or GIF")
    width, height = img.size
    if width <= 0 or height <= 0:
        raise BadImage(f"image has an empty size {width}x{height}")
    if width * height > limits.max_pixels:
        raise PayloadTooLarge(
            f"image is {width}x{height} pixels; the limit is {limits.max_pixels / 1e6:g} megapixels "
            "(set ARTSERVE_MAX_PIXELS to raise it)"
        )
    return img


def decode_image(data: bytes, limits: Limits = Limits(), draft_size: int | None = None) -> Image.Image:
    """Decode ``data`` into an 8-bit RGB image with EXIF orientation applied.

    ``draft_size`` lets the JPEG decoder scale down by 1/2, 1/4 or 1/8 while both sides stay at least
    that large (much cheaper than a full decode of a large photo). Raises an ``InputError`` subclass
    for anything the client must fix.
    """
    return load_rgb(open_image(data, limits), draft_size)


def load_rgb(img: Image.Image, draft_size: int | None = None) -> Image.Image:
    """Decode an image :func:`open_image` has checked: first frame, EXIF orientation, 8-bit RGB."""
    try:
        if draft_size and img.format in ("JPEG", "MPO"):
            img.draft(img.mode, (draft_size, draft_size))
        img.seek(0)  # first frame of an animation
        img.load()
        img = ImageOps.exif_transpose(img)
        return to_rgb(img)
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, struct.error) as e:
        raise BadImage(f"the {img.format} image is truncated or corrupt: {e}") from None


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB; transparency is composited onto white."""
    if img.mode == "RGB":
        return img
    if img.mode in _HIGH_BIT_MODES:
        return to_8bit_grey(img).convert("RGB")
    has_alpha = img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (img.mode == "P" and "transparency" in img.info)
    if has_alpha:
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        background.alpha_composite(rgba)
        return background.convert("RGB")
    return img.convert("RGB")


def to_8bit_grey(img: Image.Image) -> Image.Image:
    """A 16-bit, 32-bit integer or float greyscale image -> ``L``, a band of rows at a time.

    16-bit: ``round(v / 257)`` in integer arithmetic. 32-bit and float: float values up to 1 are scaled by 255,
    images with values over 255 are divided by 257, the rest kept; then rounded and clipped to 0-255 (NaN -> 0)."""
    width, height = img.size
    rows = max(1, _BAND_PIXELS // width)
    out = np.empty((height, width), dtype=np.uint8)
    sixteen = img.mode.startswith("I;16")
    scale = 1.0
    if not sixteen:
        peak = max((_nanmax(_band(img, y, rows)) for y in range(0, height, rows)), default=0.0)
        scale = 255.0 if img.mode == "F" and peak <= 1.0 else 1 / 257 if peak > 255 else 1.0
    for y in range(0, height, rows):
        band = _band(img, y, rows)
        if sixteen:
            out[y : y + rows] = (band.astype(np.uint32) + 128) // 257
        else:
            out[y : y + rows] = np.nan_to_num(np.clip(np.rint(band.astype(np.float64) * scale), 0, 255))
    return Image.frombuffer("L", (width, height), out, "raw", "L", 0, 1)


def _band(img: Image.Image, y: int, rows: int) -> np.ndarray:
    return np.asarray(img.crop((0, y, img.width, min(img.height, y + rows))))


def _nanmax(band: np.ndarray) -> float:
    return float(np.nanmax(band)) if band.size and not np.isnan(band).all() else 0.0
