"""Decoding, mode conversion, EXIF orientation, limits and the evaluation transform."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from PIL import Image

from handlers.errors import BadImage, PayloadTooLarge, UnsupportedMediaType
from handlers.preprocessing import (
    Limits,
    PreprocessConfig,
    center_crop_resize,
    decode_image,
    normalize,
    preprocess_bytes,
)
from tests.images import corrupt_jpeg, encode, jpeg, pattern, png_bomb

CFG = PreprocessConfig(resize=72, crop=64)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF"])
def test_every_supported_format_decodes_to_rgb(fmt):
    data = encode(pattern((80, 50)), fmt)
    img = decode_image(data)
    assert img.mode == "RGB", f"{fmt} decoded to mode {img.mode}, expected RGB"
    assert img.size == (80, 50), f"{fmt} decoded to size {img.size}"
    tensor = preprocess_bytes(data, CFG)
    assert tensor.shape == (3, 64, 64) and tensor.dtype == torch.uint8, f"{fmt}: got {tensor.shape} {tensor.dtype}"


def test_gif_uses_first_frame_of_animation():
    frames = [Image.new("RGB", (32, 32), color) for color in ((200, 0, 0), (0, 0, 200))]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    pixel = decode_image(buf.getvalue()).getpixel((16, 16))
    assert pixel[0] > 150 and pixel[2] < 50, f"expected the red first frame, got {pixel}"


def test_alpha_is_composited_on_white():
    rgba = Image.new("RGBA", (20, 20), (0, 0, 0, 0))
    rgba.paste((0, 0, 255, 255), (0, 0, 10, 20))
    img = decode_image(encode(rgba, "PNG"))
    assert img.getpixel((15, 10)) == (255, 255, 255), "a transparent pixel must become white"
    assert img.getpixel((5, 10)) == (0, 0, 255), "an opaque pixel must keep its colour"


def test_palette_with_transparency_and_la_are_composited():
    p = Image.new("P", (10, 10), 0)
    p.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    p.paste(1, (0, 0, 5, 10))
    assert decode_image(encode(p, "PNG", transparency=0)).getpixel((8, 5)) == (255, 255, 255), (
        "a transparent palette pixel was not composited on white"
    )
    la = Image.new("LA", (10, 10), (0, 0))
    assert decode_image(encode(la, "PNG")).getpixel((5, 5)) == (255, 255, 255), "transparent LA must be white"


@pytest.mark.parametrize("mode", ["L", "1", "P", "CMYK"])
def test_other_modes_convert_to_rgb(mode):
    img = pattern((40, 30)).convert(mode)
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    out = decode_image(encode(img, fmt))
    assert out.mode == "RGB" and out.size == (40, 30), f"{mode}: got {out.mode} {out.size}"


def test_cmyk_tiff_colours_survive():
    cmyk = Image.new("RGB", (8, 8), (255, 0, 0)).convert("CMYK")
    r, g, b = decode_image(encode(cmyk, "TIFF")).getpixel((4, 4))
    assert r > 200 and g < 60 and b < 60, f"CMYK red came back as {(r, g, b)}"


def test_16_bit_grayscale_is_scaled_not_clipped():
    arr = np.full((16, 16), 32768, dtype=np.uint16)  # mid-grey in 16 bits
    img = Image.fromarray(arr)
    assert img.mode.startswith("I"), f"test setup: expected a 16-bit mode, got {img.mode}"
    value = decode_image(encode(img, "PNG")).getpixel((8, 8))
    assert value == (128, 128, 128), f"16-bit mid-grey must map to 128, got {value}"


def test_exif_orientation_is_applied():
    img = Image.new("RGB", (60, 40), (0, 0, 255))
    img.paste((255, 0, 0), (0, 0, 30, 40))  # left half red, right half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    out = decode_image(encode(img, "JPEG", quality=95, exif=exif.tobytes()))
    assert out.size == (40, 60), f"EXIF orientation 6 must swap width and height, got {out.size}"
    top = out.getpixel((20, 5))
    assert top[0] > 200 and top[2] < 60, f"after rotating 90 CW the red half must be on top, got {top}"


def test_empty_and_garbage_are_bad_images():
    with pytest.raises(BadImage, match="empty"):
        decode_image(b"")
    with pytest.raises(BadImage, match="not a recognisable image"):
        decode_image(b"hello, this is not an image")
    with pytest.raises(BadImage, match="truncated or corrupt"):
        decode_image(corrupt_jpeg())
    with pytest.raises(BadImage):
        decode_image(jpeg((200, 200))[:600])  # truncated


@pytest.mark.parametrize(
    "data, name",
    [
        (b"%PDF-1.7\n%...", "PDF"),
        (b'<svg xmlns="http://www.w3.org/2000/svg"></svg>', "SVG"),
        (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic", "HEIF"),
    ],
)
def test_known_unsupported_formats_are_415(data, name):
    with pytest.raises(UnsupportedMediaType, match=name):
        decode_image(data)


def test_format_pillow_reads_but_artserve_does_not_serve_is_415():
    with pytest.raises(UnsupportedMediaType, match="ICO"):
        decode_image(encode(pattern((32, 32)), "ICO"))


def test_byte_limit():
    data = jpeg()
    with pytest.raises(PayloadTooLarge, match="ARTSERVE_MAX_BYTES"):
        decode_image(data, Limits(max_bytes=len(data) - 1))
    decode_image(data, Limits(max_bytes=len(data)))


def test_decompression_bomb_refused_before_decoding():
    bomb = png_bomb(20000)
    assert len(bomb) < 200_000, f"test setup: the bomb should be small, it is {len(bomb)} bytes"
    with pytest.raises(PayloadTooLarge, match="400000000 pixels.*the limit is 50 megapixels"):
        decode_image(bomb)
    with pytest.raises(PayloadTooLarge, match="9000x9000 pixels; the limit is 50 megapixels"):
        decode_image(png_bomb(9000))  # under Pillow's own bomb limit: artserve's limit applies
    with pytest.raises(PayloadTooLarge, match="ARTSERVE_MAX_PIXELS"):
        decode_image(jpeg((100, 100)), Limits(max_pixels=9999))


def test_limits_from_config_and_env():
    assert Limits.from_config({}, env={}) == Limits(), "empty config and environment do not give the default limits"
    assert Limits.from_config({"max_pixels": 10}, env={}).max_pixels == 10, "max_pixels from the config was ignored"
    assert Limits.from_config({"max_pixels": 10}, env={"ARTSERVE_MAX_PIXELS": "20"}).max_pixels == 20, "env wins"
    with pytest.raises(ValueError, match="not an integer"):
        Limits.from_config({}, env={"ARTSERVE_MAX_BYTES": "lots"})
    with pytest.raises(ValueError, match="positive"):
        Limits.from_config({"max_bytes": 0}, env={})


def test_centre_crop_resize_matches_torchvision_resize_then_crop():
    img = pattern((300, 200), seed=3)
    ours = np.asarray(center_crop_resize(img, PreprocessConfig()), dtype=np.float32)
    ref = TF.center_crop(TF.resize(img, 256, antialias=True), 224)
    ref = np.asarray(ref, dtype=np.float32)
    diff = np.abs(ours - ref).mean()
    assert ours.shape == ref.shape == (224, 224, 3), f"shapes {ours.shape} vs {ref.shape}"
    assert diff < 4.0, f"mean abs difference from torchvision Resize+CenterCrop is {diff:.2f} grey levels"


@pytest.mark.parametrize("size", [(1, 1), (1, 5000), (5000, 1), (3, 7)])
def test_tiny_and_extreme_aspect_ratios(size):
    tensor = preprocess_bytes(encode(pattern(size), "PNG"), CFG)
    assert tensor.shape == (3, 64, 64), f"{size}: got {tuple(tensor.shape)}"


def test_normalize_uses_mean_and_std():
    cfg = PreprocessConfig(resize=2, crop=2, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    batch = torch.tensor([0, 255], dtype=torch.uint8).view(1, 1, 1, 2).expand(1, 3, 2, 2)
    out = normalize(batch, cfg)
    assert torch.allclose(out[0, :, 0, 0], torch.full((3,), -2.0)), f"0 -> (0 - .5) / .25 = -2, got {out[0, :, 0, 0]}"
    assert torch.allclose(out[0, :, 0, 1], torch.full((3,), 2.0)), f"255 -> 2, got {out[0, :, 0, 1]}"


def test_preprocess_config_round_trip_and_validation():
    cfg = PreprocessConfig(resize=80, crop=64)
    assert PreprocessConfig.from_dict(cfg.to_dict()) == cfg, "PreprocessConfig does not survive to_dict/from_dict"
    with pytest.raises(ValueError, match="at most resize"):
        PreprocessConfig(resize=64, crop=80)
