"""Training images decoded once and kept in memory as ``uint8`` tensors, and the random views made from them.

Decoding a JPEG costs more than a small VGG step's share of it on a 2-core CPU, so every training image is
decoded once (``handlers.preprocessing.decode_image``: EXIF orientation, any mode to RGB, the serving limits),
scaled so that its longer side is at most ``max_side`` and stored as ``(3, H, W)`` uint8. Each step then cuts
fresh random views out of the stored images: random resized crop, horizontal flip, a small tilt on white, light
brightness/contrast changes. Colour carries class information here (icons' gold, watercolour washes, monochrome
engravings), so hue and saturation are left alone.

Views are drawn from a ``torch.Generator`` seeded per (seed, epoch, step), so a resumed run sees the same views
as an uninterrupted one. With a teacher, the student's view is the teacher's view scaled down: both see the same
crop.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.transforms.v2 import functional as TF

from handlers.errors import InputError
from handlers.preprocessing import decode_image, image_to_uint8

Sample = tuple[str, int]


class ImageCache:
    """Every image of ``samples`` decoded once: ``images[i]`` is uint8 ``(3, H, W)``, ``targets[i]`` its class."""

    def __init__(self, samples: Sequence[Sample], max_side: int = 256) -> None:
        self.images: list[torch.Tensor] = []
        self.targets = torch.tensor([t for _, t in samples], dtype=torch.long)
        self.max_side = max_side
        for path, _ in samples:
            try:
                img = decode_image(Path(path).read_bytes(), draft_size=max_side)
            except InputError as e:
                raise ValueError(f"training image {path} cannot be used: {e}; remove or fix it") from None
            if max(img.size) > max_side:
                scale = max_side / max(img.size)
                size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
                img = img.resize(size, Image.Resampling.BILINEAR, reducing_gap=3.0)
            self.images.append(image_to_uint8(img))

    def __len__(self) -> int:
        return len(self.images)

    def nbytes(self) -> int:
        return sum(t.numel() for t in self.images)


@dataclass(frozen=True)
class ViewConfig:
    """How random views are drawn. ``min_scale`` = smallest crop area share; ``tilt_p`` chance of a tilt."""

    min_scale: float = 0.35
    max_ratio: float = 4 / 3
    flip: bool = True
    tilt_degrees: float = 5.0
    tilt_p: float = 0.3
    brightness: float = 0.15
    contrast: float = 0.15


def _uniform(gen: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * torch.rand((), generator=gen).item()


def crop_box(height: int, width: int, cfg: ViewConfig, gen: torch.Generator) -> tuple[int, int, int, int]:
    """(top, left, h, w) of a random resized crop, as torchvision's ``RandomResizedCrop.get_params``."""
    area = height * width
    log_ratio = (math.log(1 / cfg.max_ratio), math.log(cfg.max_ratio))
    for _ in range(10):
        target = area * _uniform(gen, cfg.min_scale, 1.0)
        ratio = math.exp(_uniform(gen, *log_ratio))
        w = round(math.sqrt(target * ratio))
        h = round(math.sqrt(target / ratio))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(0, height - h + 1, (1,), generator=gen))
            left = int(torch.randint(0, width - w + 1, (1,), generator=gen))
            return top, left, h, w
    side = min(height, width)  # fallback: the centre square
    return (height - side) // 2, (width - side) // 2, side, side


def resize_uint8(img: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 ``(3, H, W)`` -> uint8 ``(3, size, size)``, antialiased bilinear (as the serving path)."""
    out = F.interpolate(img[None].float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return out[0].round_().clamp_(0, 255).to(torch.uint8)


@dataclass(frozen=True)
class ViewDraw:
    """The random choices of one view: crop box ``(top, left, h, w)``, flip, tilt angle, brightness and contrast."""

    box: tuple[int, int, int, int]
    flip: bool
    angle: float | None
    jitter: tuple[float, float] | None


def draw_view(height: int, width: int, cfg: ViewConfig, gen: torch.Generator) -> ViewDraw:
    """The choices of one view of an image of this size, in the generator's fixed order."""
    box = crop_box(height, width, cfg, gen)
    flip = bool(cfg.flip and torch.rand((), generator=gen).item() < 0.5)
    angle = None
    if cfg.tilt_p and torch.rand((), generator=gen).item() < cfg.tilt_p:
        angle = _uniform(gen, -cfg.tilt_degrees, cfg.tilt_degrees)
    jitter = None
    if cfg.brightness or cfg.contrast:
        b = _uniform(gen, 1 - cfg.brightness, 1 + cfg.brightness)
        jitter = (b, _uniform(gen, 1 - cfg.contrast, 1 + cfg.contrast))
    return ViewDraw(box, flip, angle, jitter)


def apply_view(img: torch.Tensor, size: int, draw: ViewDraw) -> torch.Tensor:
    """The uint8 ``(3, size, size)`` view of ``img`` that ``draw`` describes (no randomness here)."""
    top, left, h, w = draw.box
    view = resize_uint8(img[:, top : top + h, left : left + w], size)
    if draw.flip:
        view = view.flip(-1)
    if draw.angle is not None:
        view = TF.rotate(view, draw.angle, interpolation=TF.InterpolationMode.BILINEAR, fill=[255.0, 255.0, 255.0])
    if draw.jitter is not None:
        b, c = draw.jitter
        f = view.float()
        mean = f.mean()
        view = ((f - mean) * c + mean * b).round_().clamp_(0, 255).to(torch.uint8)
    return view


def centre_view(img: torch.Tensor, size: int, centre_fraction: float) -> torch.Tensor:
    """The evaluation's view: the centre square (``centre_fraction`` of the shorter side) scaled to ``size``."""
    _, h, w = img.shape
    side = max(1, round(min(h, w) * centre_fraction))
    return resize_uint8(
        img[:, (h - side) // 2 : (h - side) // 2 + side, (w - side) // 2 : (w - side) // 2 + side], size
    )


@functools.cache
def _pool(threads: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(threads, thread_name_prefix="views")


def view_batch(
    cache: ImageCache,
    indices: Sequence[int],
    size: int,
    cfg: ViewConfig | None,
    gen: torch.Generator,
    centre_fraction: float = 1.0,
    threads: int = 1,
) -> torch.Tensor:
    """uint8 ``(N, 3, size, size)``: random views, or (``cfg`` None) the evaluation's centre square, whose side is
    ``centre_fraction`` (crop / resize) of the shorter side. The random choices are drawn in order first, so
    ``threads`` > 1 (cutting the views side by side: PyTorch's kernels release the GIL) gives the same views."""
    images = [cache.images[i] for i in indices]
    if cfg is None:
        jobs = [functools.partial(centre_view, img, size, centre_fraction) for img in images]
    else:
        jobs = [functools.partial(apply_view, img, size, draw_view(*img.shape[1:], cfg, gen)) for img in images]
    if threads > 1 and len(jobs) > 1:
        return torch.stack(list(_pool(threads).map(lambda job: job(), jobs)))
    return torch.stack([job() for job in jobs])


def step_generator(seed: int, epoch: int, step: int) -> torch.Generator:
    """The generator for one step's views: the same (seed, epoch, step) gives the same views."""
    return torch.Generator().manual_seed((seed * 100_003 + epoch) * 1_000_003 + step)


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The shuffled order of the training images in ``epoch``."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1000 + epoch))
