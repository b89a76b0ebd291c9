"""The device decode path (nvJPEG on CUDA) exercised on the CPU: torchvision's decode_jpeg takes a list there too.

"Same tensor as the CPU path" here means: the crop/resize alone matches Pillow's to within 2 grey levels
(rounding), and the whole path (a full decode where Pillow may decode at 1/2..1/8 scale) to a mean difference under
one grey level and at most 8 anywhere.
"""

from __future__ import annotations

import pytest
import torch
from PIL import Image

import handlers.preprocessing as prep
from handlers.errors import BadImage, PayloadTooLarge
from handlers.preprocessing import (
    Limits,
    PreprocessConfig,
    center_crop_resize,
    center_crop_resize_tensor,
    decode_image,
    device_decodable,
    image_to_uint8,
    open_image,
    preprocess_batch,
    preprocess_bytes,
)
from tests.images import encode, jpeg, pattern

CFG = PreprocessConfig(resize=256, crop=224)
CPU = torch.device("cpu")


def corrupt_with_end_marker() -> bytes:
    """A JPEG header, garbage, then the end-of-image marker: it reaches the device decoder, which refuses it."""
    return jpeg((96, 64))[:200] + bytes(range(256)) * 8 + b"\xff\xd9"


def rotated_jpeg() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    return encode(pattern((120, 80)), "JPEG", quality=95, exif=exif.tobytes())


def diff(a: torch.Tensor, b: torch.Tensor) -> tuple[float, int]:
    d = (a.int() - b.int()).abs().float()
    return float(d.mean()), int(d.max())


@pytest.fixture
def decode_calls(monkeypatch):
    """Records how many images each decode_jpeg call was given (1 for a single tensor)."""
    calls: list[int] = []
    real = prep.decode_jpeg

    def spy(data, **kwargs):
        calls.append(len(data) if isinstance(data, list) else 1)
        return real(data, **kwargs)

    monkeypatch.setattr(prep, "decode_jpeg", spy)
    return calls


@pytest.mark.parametrize("size", [(96, 64), (300, 200), (640, 480), (1200, 900), (2000, 1500), (57, 300)])
def test_device_path_matches_the_cpu_path(size):
    data = jpeg(size, seed=1)
    img = decode_image(data)
    mean, worst = diff(
        center_crop_resize_tensor(image_to_uint8(img), CFG), image_to_uint8(center_crop_resize(img, CFG))
    )
    assert mean < 0.3 and worst <= 2, f"{size}: the tensor resize differs from Pillow's by mean {mean:.3f}, max {worst}"
    (out,) = preprocess_batch([data], CFG, device=CPU)
    mean, worst = diff(out, preprocess_bytes(data, CFG))
    assert out.shape == (3, 224, 224) and out.dtype == torch.uint8, f"{size}: got {tuple(out.shape)} {out.dtype}"
    assert mean < 1.0 and worst <= 8, f"{size}: device vs CPU path differ by mean {mean:.3f}, max {worst} grey levels"


def test_what_the_device_path_takes():
    cases = {
        "RGB JPEG": (jpeg(), True),
        "grayscale JPEG": (encode(pattern().convert("L"), "JPEG"), True),
        "CMYK JPEG": (encode(pattern().convert("CMYK"), "JPEG"), False),
        "EXIF-rotated JPEG": (rotated_jpeg(), False),
        "truncated JPEG": (jpeg((200, 200))[:-300], False),
        "PNG": (encode(pattern(), "PNG"), False),
        "WebP": (encode(pattern(), "WEBP"), False),
    }
    for name, (data, expected) in cases.items():
        assert device_decodable(open_image(data), data) is expected, f"{name}: device_decodable should be {expected}"


def test_batch_decodes_together_and_a_corrupt_jpeg_gets_its_own_error(decode_calls):
    items = [jpeg(seed=1), corrupt_with_end_marker(), encode(pattern(seed=2), "PNG"), jpeg(seed=3), rotated_jpeg()]
    out = preprocess_batch(items, CFG, device=CPU)
    assert decode_calls == [3, 1, 1, 1], f"expected one batched call of 3 JPEGs, then one per image: {decode_calls}"
    assert isinstance(out[1], BadImage), f"the corrupt JPEG must get its own BadImage, got {out[1]!r}"
    for i in (0, 2, 3, 4):
        assert isinstance(out[i], torch.Tensor), f"image {i} must decode despite the corrupt one: {out[i]!r}"
        mean, worst = diff(out[i], preprocess_bytes(items[i], CFG))
        assert mean < 1.0 and worst <= 8, f"image {i}: differs from the CPU path by mean {mean:.3f}, max {worst}"


def test_one_good_batch_is_one_decode_call(decode_calls):
    out = preprocess_batch([jpeg(seed=s) for s in range(4)], CFG, device=CPU)
    assert decode_calls == [4], f"a batch of good JPEGs must be decoded in one call: {decode_calls}"
    assert all(isinstance(t, torch.Tensor) and t.device == CPU for t in out), f"expected tensors: {out}"


def test_a_jpeg_the_device_refuses_takes_the_cpu_path(monkeypatch):
    data = jpeg((300, 200), seed=5)

    def refuse(data, **kwargs):
        raise RuntimeError("simulated nvJPEG refusal")

    monkeypatch.setattr(prep, "decode_jpeg", refuse)
    (out,) = preprocess_batch([data], CFG, device=CPU)
    assert isinstance(out, torch.Tensor), f"a JPEG the device refuses must be decoded on the CPU, got {out!r}"
    assert torch.equal(out, preprocess_bytes(data, CFG)), "the CPU fallback must give the CPU path's tensor exactly"


def test_limits_are_checked_before_any_decode(decode_calls):
    out = preprocess_batch([jpeg((100, 100))], CFG, Limits(max_pixels=9999), device=CPU)
    assert isinstance(out[0], PayloadTooLarge), f"over the pixel limit must be a 413, got {out[0]!r}"
    assert decode_calls == [], f"nothing may be decoded when the header is over the limit: {decode_calls}"


def test_without_a_device_every_image_takes_the_cpu_path(decode_calls):
    items = [jpeg(seed=1), corrupt_with_end_marker()]
    out = preprocess_batch(items, CFG)
    assert decode_calls == [], f"device None must not call decode_jpeg: {decode_calls}"
    assert torch.equal(out[0], preprocess_bytes(items[0], CFG)), "device None must be exactly the CPU path"
    assert isinstance(out[1], BadImage), f"the corrupt JPEG must be a BadImage, got {out[1]!r}"


def test_a_thread_pool_decodes_the_same_tensors_and_keeps_errors_per_image():
    from concurrent.futures import ThreadPoolExecutor

    items = [jpeg(seed=s) for s in range(5)]
    items.insert(2, corrupt_with_end_marker())
    with ThreadPoolExecutor(3) as pool:
        out = preprocess_batch(items, CFG, pool=pool)
    assert isinstance(out[2], BadImage), f"the corrupt JPEG must get its own BadImage in a pooled batch, got {out[2]!r}"
    for i, data in enumerate(items):
        if i != 2:
            assert torch.equal(out[i], preprocess_bytes(data, CFG)), f"image {i}: the pool changed its tensor or order"


def test_decode_threads_setting():
    from handlers.classifier import decode_threads

    assert decode_threads({}, env={}) == torch.get_num_threads(), "unset must follow torch's thread count"
    assert decode_threads({"decode_threads": 3}, env={}) == 3, "the handler setting must be used"
    assert decode_threads({"decode_threads": 3}, env={"ARTSERVE_DECODE_THREADS": "1"}) == 1, "the env var must win"
    for bad in ("x", "-1"):
        with pytest.raises(ValueError, match="decode_threads"):
            decode_threads({"decode_threads": bad}, env={})
