"""Costly structures, generated in memory: files whose decoding would cost far more than their pixel count, each as
a :class:`~tests.hostile.Case` with the answer the service must give (docs/security.md, "Decode cost"). Used by
``tests/unit/test_decode_cost.py`` and ``tests/integration/test_decode_cost.py``."""

from __future__ import annotations

import io
import struct

import numpy as np
from PIL import Image

from loadtests.decode_cost import jpeg_scan_bomb, png16_gradient  # noqa: F401 - the tests' crafted files too
from tests.hostile import Case, png, png_chunk
from tests.images import encode, jpeg, pattern


def jpeg_with_markers(count: int, between_scans: bool = False) -> bytes:
    """A JPEG with ``count`` empty comment segments before its first scan (or before its last scan)."""
    data = jpeg((64, 64), progressive=between_scans)
    at = data.rindex(b"\xff\xda") if between_scans else 2
    return data[:at] + b"\xff\xfe\x00\x02" * count + data[at:]


def jpeg_arithmetic() -> bytes:
    """A JPEG whose frame header is marked arithmetic-coded (SOF9)."""
    data = bytearray(jpeg((64, 64)))
    data[data.index(b"\xff\xc0") + 1] = 0xC9
    return bytes(data)


def png_with_chunk(kind: bytes, payload: bytes, count: int = 1) -> bytes:
    """A valid PNG with ``count`` extra chunks of ``kind`` right after its header."""
    data = png(pattern((64, 48)))
    at = 8 + 12 + 13  # signature, IHDR
    return data[:at] + png_chunk(kind, payload) * count + data[at:]


def gif_with_blocks(count: int) -> bytes:
    """A GIF with a comment extension of ``count`` one-byte blocks before its first frame."""
    data = encode(pattern((32, 24)).convert("P"), "GIF")
    at = 13 + 3 * 2 ** ((data[10] & 7) + 1)  # header, global colour table
    return data[:at] + b"\x21\xfe" + b"\x01x" * count + b"\x00" + data[at:]


def tiff_claiming_strips(count: int) -> bytes:
    """A small TIFF whose StripOffsets entry claims ``count`` strips."""
    data = bytearray(encode(pattern((16, 16)), "TIFF"))
    ifd = struct.unpack_from("<I", data, 4)[0]
    for k in range(struct.unpack_from("<H", data, ifd)[0]):
        if struct.unpack_from("<H", data, ifd + 2 + 12 * k)[0] == 273:
            struct.pack_into("<I", data, ifd + 2 + 12 * k + 4, count)
            return bytes(data)
    raise AssertionError("no StripOffsets tag in the generated TIFF")


def tiff_with_tags(count: int) -> bytes:
    """A small TIFF whose first directory claims ``count`` tags."""
    data = bytearray(encode(pattern((16, 16)), "TIFF"))
    struct.pack_into("<H", data, struct.unpack_from("<I", data, 4)[0], count)
    return bytes(data)


def bmp_rle() -> bytes:
    """An 8-bit BMP whose header says RLE8 compression."""
    data = bytearray(encode(pattern((16, 16)).convert("P"), "BMP"))
    struct.pack_into("<I", data, 30, 1)
    return bytes(data)


def animated(fmt: str, pages: int = 3) -> bytes:
    """An animated WebP or GIF, or a multi-page TIFF: red first, then other colours."""
    frames = [Image.new("RGB", (32, 32), c) for c in ((200, 0, 0), (0, 0, 200), (0, 200, 0))[:pages]]
    buf = io.BytesIO()
    frames[0].save(buf, format=fmt, save_all=True, append_images=frames[1:])
    return buf.getvalue()


def costly_cases() -> list[Case]:
    """One request per decode cost class with its expected answer: refused before decoding (422 ``too_costly`` or
    415) or, where the cost stays bounded by the pixel count, a prediction."""
    tiny = pattern((40, 30))
    return [
        Case("JPEG scan bomb (5000 scans)", jpeg_scan_bomb((256, 256), 60_000), status=422, type="too_costly"),
        Case("JPEG with 2000 markers before its scan", jpeg_with_markers(2000), status=422, type="too_costly"),
        Case("JPEG with 2000 markers between scans", jpeg_with_markers(2000, True), status=422, type="too_costly"),
        Case("arithmetic-coded JPEG", jpeg_arithmetic(), status=415, type="unsupported_media_type"),
        Case("progressive JPEG", jpeg((300, 200), progressive=True)),
        Case("JPEG with a restart marker per block", jpeg((300, 200), restart_marker_blocks=1)),
        Case("JPEG with a 300 KB ICC profile", encode(tiny, "JPEG", icc_profile=bytes(300_000))),
        Case("PNG of 20000 chunks", png_with_chunk(b"prVt", b"", 20_000), "image/png", status=422, type="too_costly"),
        Case(
            "PNG with a 100 KB EXIF",
            png_with_chunk(b"eXIf", bytes(100_000)),
            "image/png",
            status=422,
            type="too_costly",
        ),
        Case("PNG with 100 text chunks", png_with_chunk(b"tEXt", b"k\x00v" * 100, 100), "image/png"),
        Case(
            "GIF with 5000 blocks before its frame", gif_with_blocks(5000), "image/gif", status=422, type="too_costly"
        ),
        Case("animated WebP", animated("WEBP"), "image/webp"),
        Case("TIFF claiming 70000 strips", tiff_claiming_strips(70_000), "image/tiff", status=422, type="too_costly"),
        Case(
            "JPEG-compressed TIFF",
            encode(tiny, "TIFF", compression="jpeg"),
            "image/tiff",
            status=415,
            type="unsupported_media_type",
        ),
        Case("TIFF claiming 5000 tags", tiff_with_tags(5000), "image/tiff", status=422, type="too_costly"),
        Case("multi-page TIFF", animated("TIFF"), "image/tiff"),
        Case(
            "float TIFF",
            encode(Image.fromarray(np.linspace(0, 1, 1200, dtype=np.float32).reshape(30, 40)), "TIFF"),
            "image/tiff",
        ),
        Case("RLE BMP", bmp_rle(), "image/bmp", status=415, type="unsupported_media_type"),
    ]
