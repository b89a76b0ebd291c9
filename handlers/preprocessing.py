"""Image preprocessing, defined once: bytes -> RGB image -> uint8 tensor -> normalised float batch.

Training, evaluation and the serving classifier (``classifier.py``) all call these functions, so the
model sees the same tensor for the same image wherever it runs. ``tests/integration/test_skew.py`` proves
it end to end (a trained, exported model answers the same through a real TorchServe as in-process, and
``training.evaluate`` agrees with ``tagging.evaluate`` against the server); ``tests/unit/test_preprocessing.py``
checks each step, the crop against torchvision's ``Resize`` + ``CenterCrop``.

Steps: refuse oversize payloads and images before decoding them (decompression bombs), decode one of
the supported formats (first frame of animations), apply EXIF orientation, convert any mode to 8-bit
RGB (alpha composited on white, 16-bit scaled, CMYK converted), take the centre square that a
"resize shorter side to ``resize``, centre-crop ``crop``" transform keeps and scale it to
``crop`` x ``crop`` in one antialiased bilinear resize, and normalise with the ImageNet statistics.
"""

from __future__ import annotations

import io
import os
import struct
import warnings
from collections.abc import Mapping
from concurrent.futures import Executor
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torchvision.io import ImageReadMode, decode_jpeg

from handlers.errors import BadImage, InputError, PayloadTooLarge, UnsupportedMediaType

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: Pillow format names that artserve decodes. MPO is the multi-picture JPEG that cameras write.
SUPPORTED_FORMATS = ("JPEG", "MPO", "PNG", "WEBP", "BMP", "TIFF", "GIF")

#: Formats that clients plausibly send but artserve does not decode: magic bytes -> name.
_UNSUPPORTED_SIGNATURES = (
    (b"%PDF", "PDF"),
    (b"<svg", "SVG"),
    (b"<?xml", "SVG/XML"),
    (b"\x00\x00\x00\x0cjP  ", "JPEG 2000"),
    (b"\xff\x4f\xff\x51", "JPEG 2000"),
)
_HEIF_BRANDS = (b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1", b"avif", b"avis")


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


@dataclass(frozen=True)
class PreprocessConfig:
    """The evaluation transform: shorter side to ``resize``, centre crop ``crop``, normalise."""

    resize: int = 256
    crop: int = 224
    mean: tuple[float, float, float] = field(default=IMAGENET_MEAN)
    std: tuple[float, float, float] = field(default=IMAGENET_STD)

    def __post_init__(self) -> None:
        if not 0 < self.crop <= self.resize:
            raise ValueError(f"crop={self.crop} must be positive and at most resize={self.resize}")
        object.__setattr__(self, "mean", tuple(float(m) for m in self.mean))
        object.__setattr__(self, "std", tuple(float(s) for s in self.std))

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: Mapping) -> PreprocessConfig:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


def _sniff_unsupported(data: bytes) -> str | None:
    head = data[:64].lstrip()
    for magic, name in _UNSUPPORTED_SIGNATURES:
        if head.startswith(magic):
            return name
    if data[4:8] == b"ftyp" and data[8:12] in _HEIF_BRANDS:
        return "HEIF/AVIF"
    return None


def open_image(data: bytes, limits: Limits = Limits()) -> Image.Image:
    """Read the image's header only (nothing decoded yet) and enforce ``limits`` and the supported formats.

    Raises an ``InputError`` subclass for anything the client must fix."""
    if not data:
        raise BadImage("the request has no image data (empty body)")
    if len(data) > limits.max_bytes:
        raise PayloadTooLarge(
            f"image is {len(data)} bytes; the limit is {limits.max_bytes} bytes (set ARTSERVE_MAX_BYTES to raise it)"
        )
    unsupported = _sniff_unsupported(data)
    if unsupported:
        raise UnsupportedMediaType(f"{unsupported} is not supported; send JPEG, PNG, WebP, BMP, TIFF or GIF")
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
    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        if img.mode.startswith("I;16"):
            arr = arr / 257.0
        elif img.mode == "F" and arr.size and float(np.nanmax(arr)) <= 1.0:
            arr = arr * 255.0
        elif arr.size and float(np.nanmax(arr)) > 255:
            arr = arr / 257.0
        arr = np.nan_to_num(np.clip(np.rint(arr), 0, 255))
        return Image.fromarray(arr.astype(np.uint8)).convert("RGB")
    has_alpha = img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (img.mode == "P" and "transparency" in img.info)
    if has_alpha:
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        background.alpha_composite(rgba)
        return background.convert("RGB")
    return img.convert("RGB")


def center_crop_resize(img: Image.Image, cfg: PreprocessConfig) -> Image.Image:
    """Equivalent of ``Resize(cfg.resize)`` + ``CenterCrop(cfg.crop)`` in one resize.

    The centre square kept by the crop is cut out in source coordinates, so even a 1x10000 strip
    costs one small resize rather than a huge intermediate image.
    """
    width, height = img.size
    side = min(width, height) * cfg.crop / cfg.resize
    left, top = (width - side) / 2, (height - side) / 2
    return img.resize((cfg.crop, cfg.crop), Image.Resampling.BILINEAR, box=(left, top, left + side, top + side))


def image_to_uint8(img: Image.Image) -> torch.Tensor:
    """RGB image -> ``uint8`` tensor of shape ``(3, H, W)``."""
    arr = np.asarray(img, dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()


def preprocess_bytes(data: bytes, cfg: PreprocessConfig, limits: Limits = Limits()) -> torch.Tensor:
    """Request bytes -> ``uint8`` tensor ``(3, crop, crop)`` ready for :func:`normalize`."""
    return preprocess_checked(open_image(data, limits), cfg)


def preprocess_checked(img: Image.Image, cfg: PreprocessConfig) -> torch.Tensor:
    """An image :func:`open_image` has checked -> ``uint8 (3, crop, crop)``: decode (reduced by the JPEG draft where
    it can), crop and resize."""
    return image_to_uint8(center_crop_resize(load_rgb(img, draft_size=cfg.resize), cfg))


def normalize(batch: torch.Tensor, cfg: PreprocessConfig, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``uint8`` batch ``(N, 3, H, W)`` on any device -> normalised float batch on the same device."""
    mean = torch.tensor(cfg.mean, device=batch.device, dtype=dtype).view(1, 3, 1, 1) * 255.0
    std = torch.tensor(cfg.std, device=batch.device, dtype=dtype).view(1, 3, 1, 1) * 255.0
    return (batch.to(dtype) - mean) / std


# ---------------------------------------------------------------------------------------------------
# The device path (CUDA): a batch's plain JPEGs decoded together with nvJPEG, cropped, resized there.
#
# It handles exactly what the CPU path would treat as "decode, crop, resize" with nothing else to do: a JPEG (not MPO)
# in RGB/YCbCr or grayscale, with no EXIF rotation (decode_jpeg applies EXIF orientation on the CPU only), that ends
# with its end-of-image marker (so a truncated file never reaches a decoder that might fill it in). Everything else
# (PNG, WebP, ..., CMYK JPEGs, rotated photos), and any JPEG the device refuses, takes the CPU path, which gives the
# answer the CPU would give: the decoded image or that image's own ``InputError``. Header checks and limits come first.

_EXIF_ORIENTATION = 0x0112


def device_decodable(img: Image.Image, data: bytes) -> bool:
    """True when the checked header ``img`` of ``data`` is a JPEG the device path decodes exactly as the CPU would."""
    return (
        img.format == "JPEG"
        and img.mode in ("RGB", "L")
        and img.getexif().get(_EXIF_ORIENTATION, 1) == 1
        and data.rstrip(b"\x00")[-2:] == b"\xff\xd9"
    )


def decode_jpegs(items: list[bytes], device: torch.device) -> list[torch.Tensor | None]:
    """JPEG bytes -> ``uint8 (3, H, W)`` on ``device``: one batched call, then one call per image if the batch
    fails; ``None`` for an image the decoder refuses on its own."""
    tensors = [torch.frombuffer(bytearray(data), dtype=torch.uint8) for data in items]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*decoding and encoding capabilities of TorchVision")
        try:
            return list(decode_jpeg(tensors, mode=ImageReadMode.RGB, device=device))
        except (RuntimeError, ValueError):
            pass
        decoded: list[torch.Tensor | None] = []
        for tensor in tensors:
            try:
                decoded.append(decode_jpeg(tensor, mode=ImageReadMode.RGB, device=device))
            except (RuntimeError, ValueError):
                decoded.append(None)
        return decoded


def resample_matrix(size: int, out: int, start: float, end: float, device: torch.device) -> torch.Tensor:
    """``(out, size)`` weights of Pillow's antialiased bilinear resample of the source span ``[start, end)``
    to ``out`` pixels (``ImagingResample``'s coefficients: a triangle widened by the scale when reducing)."""
    scale = (end - start) / out
    support = max(scale, 1.0)
    centre = start + (torch.arange(out, device=device, dtype=torch.float64) + 0.5) * scale
    x = torch.arange(size, device=device, dtype=torch.float64) + 0.5
    weights = (1 - ((x[None, :] - centre[:, None]) / support).abs()).clamp(min=0)
    return (weights / weights.sum(1, keepdim=True).clamp(min=1e-12)).float()


def center_crop_resize_tensor(image: torch.Tensor, cfg: PreprocessConfig) -> torch.Tensor:
    """:func:`center_crop_resize` for a ``uint8 (3, H, W)`` tensor on any device: the same centre square,
    resized by the same weights, horizontally then vertically, rounding to 8 bits in between as Pillow does."""
    _, height, width = image.shape
    side = min(width, height) * cfg.crop / cfg.resize
    left, top = (width - side) / 2, (height - side) / 2
    across = resample_matrix(width, cfg.crop, left, left + side, image.device)
    down = resample_matrix(height, cfg.crop, top, top + side, image.device)
    rows = (image.float() @ across.T).round_().clamp_(0, 255)
    return (down @ rows).round_().clamp_(0, 255).to(torch.uint8)


def preprocess_batch(
    items: list[bytes],
    cfg: PreprocessConfig,
    limits: Limits = Limits(),
    device: torch.device | str | None = None,
    pool: Executor | None = None,
) -> list[torch.Tensor | InputError]:
    """Many requests' image bytes -> for each, ``uint8 (3, crop, crop)`` or its ``InputError``.

    ``device`` None: every image as :func:`preprocess_bytes` does it, on ``pool``'s threads when one is given (the
    images of a batch decoded at once, not one after another). A device (CUDA in serving; the CPU in tests):
    the :func:`device_decodable` JPEGs are decoded together by ``torchvision.io.decode_jpeg`` there and cropped
    and resized there; the rest, and any JPEG the device refuses, go the CPU way. Every tensor returned is on
    ``device``."""
    results: list[torch.Tensor | InputError | None] = [None] * len(items)
    on_device: dict[int, bytes] = {}

    def check_and_route(i: int) -> None:
        """Header checks and limits first; then either queue image ``i`` for the device or decode it here."""
        try:
            img = open_image(items[i], limits)
            if device is not None and device_decodable(img, items[i]):
                on_device[i] = items[i]
            else:
                results[i] = preprocess_checked(img, cfg)
        except InputError as e:
            results[i] = e

    indices = range(len(items))
    if pool is not None and len(items) > 1:  # Pillow releases the GIL while it decodes and resizes
        list(pool.map(check_and_route, indices))
    else:
        for i in indices:
            check_and_route(i)
    on_device = dict(sorted(on_device.items()))  # batch order, whichever thread queued them
    if on_device:
        decoded = decode_jpegs(list(on_device.values()), torch.device(device))
        for (i, data), image in zip(on_device.items(), decoded, strict=True):
            try:
                results[i] = (
                    preprocess_bytes(data, cfg, limits) if image is None else center_crop_resize_tensor(image, cfg)
                )
            except InputError as e:
                results[i] = e
    if device is None:
        return results
    return [r.to(device) if isinstance(r, torch.Tensor) else r for r in results]  # one device for the batch
