"""Image preprocessing, defined once: bytes -> RGB image -> uint8 tensor -> normalised float batch.

Training, evaluation and the serving classifier (``classifier.py``) all call these functions, so the
model sees the same tensor for the same image wherever it runs. ``tests/integration/test_skew.py`` proves
it end to end (a trained, exported model answers the same through a real TorchServe as in-process, and
``training.evaluate`` agrees with ``tagging.evaluate`` against the server); ``tests/unit/test_preprocessing.py``
checks each step, the crop against torchvision's ``Resize`` + ``CenterCrop``.

Steps: refuse oversize payloads, images and costly structures before decoding them (``decoding.open_image``:
decompression bombs, scan bombs), decode one of the supported formats (first frame of animations), apply EXIF
orientation, convert any mode to 8-bit RGB (``decoding.load_rgb``: alpha composited on white, 16-bit scaled,
CMYK converted), take the centre square that a "resize shorter side to ``resize``, centre-crop ``crop``"
transform keeps and scale it to ``crop`` x ``crop`` in one antialiased bilinear resize, and normalise with the
ImageNet statistics. In serving, a guard (``decode_pool``) runs the decode and crop in a child process with a
deadline and a memory budget; the steps are the same.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from PIL import Image
from torchvision.io import ImageReadMode, decode_jpeg

from handlers.decoding import Limits, decode_image, load_rgb, open_image  # noqa: F401 - decode_image: training's
from handlers.errors import InputError

#: Decodes one checked image in a child process with a deadline (``decode_pool.DecodePool`` bound to this config):
#: ``guard(data, header) -> uint8 (crop, crop, 3)``.
Guard = Callable[[bytes, Image.Image], np.ndarray]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


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
    return array_to_uint8(np.asarray(img, dtype=np.uint8))


def array_to_uint8(arr: np.ndarray) -> torch.Tensor:
    """``uint8 (H, W, 3)`` array -> ``uint8`` tensor of shape ``(3, H, W)``."""
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()


def preprocess_bytes(
    data: bytes, cfg: PreprocessConfig, limits: Limits = Limits(), guard: Guard | None = None
) -> torch.Tensor:
    """Request bytes -> ``uint8`` tensor ``(3, crop, crop)`` ready for :func:`normalize`; decoded by ``guard`` when
    one is given, else here."""
    img = open_image(data, limits)
    return array_to_uint8(guard(data, img)) if guard else preprocess_checked(img, cfg)


def preprocess_checked(img: Image.Image, cfg: PreprocessConfig) -> torch.Tensor:
    """An image :func:`open_image` has checked -> ``uint8 (3, crop, crop)``: decode (reduced by the JPEG draft where
    it can), crop and resize."""
    return array_to_uint8(crop_array(img, cfg))


def crop_array(img: Image.Image, cfg: PreprocessConfig) -> np.ndarray:
    """A checked image -> ``uint8 (crop, crop, 3)``: what a guard's child process computes and hands back."""
    return np.asarray(center_crop_resize(load_rgb(img, draft_size=cfg.resize), cfg), dtype=np.uint8)


def decode_crop(data: bytes, cfg: PreprocessConfig, limits: Limits) -> np.ndarray:
    """Image bytes -> ``uint8 (crop, crop, 3)`` (:func:`crop_array` of :func:`open_image`): a guard's work."""
    return crop_array(open_image(data, limits), cfg)


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
    guard: Guard | None = None,
) -> list[torch.Tensor | InputError]:
    """Many requests' image bytes -> for each, ``uint8 (3, crop, crop)`` or its ``InputError``.

    ``device`` None: every image as :func:`preprocess_bytes` does it (by ``guard`` when one is given), on ``pool``'s
    threads when one is given (the images of a batch decoded at once, not one after another). A device (CUDA in
    serving; the CPU in tests): the :func:`device_decodable` JPEGs are decoded together by
    ``torchvision.io.decode_jpeg`` there and cropped and resized there; the rest, and any JPEG the device refuses, go
    the CPU way. Every tensor returned is on ``device``."""
    results: list[torch.Tensor | InputError | None] = [None] * len(items)
    on_device: dict[int, bytes] = {}

    def check_and_route(i: int) -> None:
        """Header checks and limits first; then either queue image ``i`` for the device or decode it here."""
        try:
            img = open_image(items[i], limits)
            if device is not None and device_decodable(img, items[i]):
                on_device[i] = items[i]
            else:
                results[i] = array_to_uint8(guard(items[i], img)) if guard else preprocess_checked(img, cfg)
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
                if image is None:
                    results[i] = preprocess_bytes(data, cfg, limits, guard)
                else:
                    results[i] = center_crop_resize_tensor(image, cfg)
            except InputError as e:
                results[i] = e
    if device is None:
        return results
    return [r.to(device) if isinstance(r, torch.Tensor) else r for r in results]  # one device for the batch
