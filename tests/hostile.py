"""Hostile and odd requests, generated in memory, each with the exact answer the service must give.

Every :class:`Case` is one HTTP request (raw body, multipart form or JSON) plus the expected status and
error ``type`` (``None`` for a 200 with a prediction). The suite in ``tests/integration/test_hostile.py``
sends them mixed with valid images. Generated requests for the property and fuzz tests are in
``tests/strategies.py``.
"""

from __future__ import annotations

import base64
import io
import json
import struct
import zlib
from dataclasses import dataclass, field

import numpy as np
import requests
from PIL import Image

from deploy.server import Server
from tests.images import encode, jpeg, pattern


@dataclass(frozen=True)
class Case:
    name: str
    body: bytes | None = None  # raw body (None with files=...)
    content_type: str | None = "image/jpeg"  # None: send no Content-Type header at all
    files: dict | None = None  # multipart fields for requests: {name: (filename, bytes, type)}
    status: int = 200
    type: str | None = None  # expected error type; None for a 200 prediction
    headers: dict = field(default_factory=dict)

    def request_kwargs(self) -> dict:
        """Keyword arguments for ``requests.post`` that send exactly this request."""
        if self.files is not None:
            return {"files": self.files}
        headers = dict(self.headers)
        if self.content_type is not None:
            headers["Content-Type"] = self.content_type
        return {"data": self.body or b"", "headers": headers}


# --- crafted files -------------------------------------------------------------------------------


def png(img: Image.Image, **params) -> bytes:
    return encode(img, "PNG", **params)


def truncated(data: bytes, keep: float = 0.5) -> bytes:
    return data[: int(len(data) * keep)]


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_garbage_idat(size: tuple[int, int] = (64, 64)) -> bytes:
    """A valid PNG signature and IHDR whose image data is not zlib at all."""
    ihdr = struct.pack(">IIBBBBB", size[0], size[1], 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", bytes(range(256)) * 4)
        + png_chunk(b"IEND", b"")
    )


def jpeg_claiming(width: int, height: int) -> bytes:
    """A small valid JPEG whose frame header is patched to claim ``width`` x ``height`` (a bomb)."""
    data = bytearray(jpeg((64, 64)))
    i = 2
    while i < len(data):
        marker, length = data[i + 1], struct.unpack(">H", data[i + 2 : i + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2):
            data[i + 5 : i + 9] = struct.pack(">HH", height, width)
            return bytes(data)
        i += 2 + length
    raise AssertionError("no SOF marker in the generated JPEG")


def gif_claiming(width: int, height: int) -> bytes:
    """A small GIF whose screen and frame descriptors claim ``width`` x ``height`` (a bomb)."""
    data = bytearray(encode(Image.new("P", (8, 8)), "GIF"))
    data[6:10] = struct.pack("<HH", width, height)
    desc = data.index(b"\x2c")  # image descriptor: ',' left top width height
    data[desc + 5 : desc + 9] = struct.pack("<HH", width, height)
    return bytes(data)


def png_bomb_over_limit() -> bytes:
    """8000x8000 = 64 MP: over artserve's 50 MP limit but under Pillow's own bomb threshold."""
    return png(Image.new("1", (8000, 8000)), optimize=True)


def png_bomb_huge() -> bytes:
    """A 20000x20000 PNG of a few KB: over Pillow's bomb threshold too."""
    return png(Image.new("1", (20000, 20000)), optimize=True)


def cmyk_jpeg() -> bytes:
    return encode(pattern().convert("CMYK"), "JPEG")


def png16() -> bytes:
    arr = (np.linspace(0, 65535, 64 * 48, dtype=np.uint32).reshape(48, 64)).astype(np.uint16)
    return png(Image.fromarray(arr))  # uint16 -> mode I;16


def animated_gif() -> bytes:
    frames = [pattern(seed=s).convert("P") for s in range(3)]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    return buf.getvalue()


SVG = b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/></svg>'
HEIC = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(64)
PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# --- the catalogue -------------------------------------------------------------------------------


def hostile_cases() -> list[Case]:
    """Every hostile or odd request with its expected outcome (built fresh: some are a few MB)."""
    good = jpeg()
    return [
        # empty and not-an-image bodies
        Case("empty body", b"", status=400, type="bad_image"),
        Case("empty body, no content type", b"", content_type=None, status=400, type="bad_image"),
        Case("text as image/jpeg", b"hello, this is not a picture\n" * 10, status=400, type="bad_image"),
        Case(
            "random bytes",
            bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8)),
            status=400,
            type="bad_image",
        ),
        # truncated, corrupted, valid header with garbage
        Case("truncated JPEG", truncated(good), status=400, type="bad_image"),
        Case("truncated PNG", truncated(png(pattern())), "image/png", status=400, type="bad_image"),
        Case("JPEG header only", good[:20], status=400, type="bad_image"),
        Case("PNG signature with garbage IDAT", png_garbage_idat(), "image/png", status=400, type="bad_image"),
        Case("JPEG with garbage scan data", good[:200] + bytes(range(256)) * 8, status=400, type="bad_image"),
        # decompression bombs: tiny files that claim huge images
        Case("PNG bomb 64 MP", png_bomb_over_limit(), "image/png", status=413, type="too_large"),
        Case("PNG bomb 400 MP", png_bomb_huge(), "image/png", status=413, type="too_large"),
        Case("JPEG bomb 60000x60000", jpeg_claiming(60000, 60000), status=413, type="too_large"),
        Case("GIF bomb 65535x65535", gif_claiming(65535, 65535), "image/gif", status=413, type="too_large"),
        # over the handler's byte limit (20 MiB) but under the frontend's request limit (27 MiB)
        Case("21 MiB body", good + bytes(21 * 1024 * 1024), status=413, type="too_large"),
        # odd but valid images: 200
        Case("1x1 JPEG", jpeg((1, 1))),
        Case("1x4000 strip", png(pattern((1, 4000))), "image/png"),
        Case("4000x1 strip", png(pattern((4000, 1))), "image/png"),
        Case("CMYK JPEG", cmyk_jpeg()),
        Case("16-bit grayscale PNG", png16(), "image/png"),
        Case("palette PNG", png(pattern().convert("P")), "image/png"),
        Case("grayscale JPEG", encode(pattern().convert("L"), "JPEG")),
        Case("RGBA PNG", png(pattern().convert("RGBA")), "image/png"),
        Case("LA PNG", png(pattern().convert("LA")), "image/png"),
        Case("animated GIF", animated_gif(), "image/gif"),
        Case("JPEG sent without Content-Type", good, content_type=None),
        Case("JPEG as octet-stream", good, "application/octet-stream"),
        # unsupported formats: 415, by declared type or by content
        Case("SVG", SVG, "image/svg+xml", status=415, type="unsupported_media_type"),
        Case("SVG sent as image/png", SVG, "image/png", status=415, type="unsupported_media_type"),
        Case("HEIC", HEIC, "image/heic", status=415, type="unsupported_media_type"),
        Case("HEIC sent as octet-stream", HEIC, "application/octet-stream", status=415, type="unsupported_media_type"),
        Case("PDF", PDF, "application/pdf", status=415, type="unsupported_media_type"),
        Case("PDF sent as image/jpeg", PDF, status=415, type="unsupported_media_type"),
        # wrong content types
        Case("JPEG as text/plain", good, "text/plain", status=415, type="unsupported_media_type"),
        # (a form-urlencoded body holding '%' is refused by the frontend itself: see test_hostile.py)
        Case(
            "JPEG as form-urlencoded",
            good.replace(b"%", b""),
            "application/x-www-form-urlencoded",
            status=415,
            type="unsupported_media_type",
        ),
        # multipart
        Case("multipart image field", files={"image": ("a.jpg", good, "image/jpeg")}),
        Case(
            "multipart wrong field names",
            files={"photo": ("a.jpg", good, "image/jpeg"), "other": ("b.txt", b"x", "text/plain")},
            status=400,
            type="bad_request",
        ),
        Case(
            "multipart SVG part",
            files={"image": ("a.svg", SVG, "image/svg+xml")},
            status=415,
            type="unsupported_media_type",
        ),
        Case(
            "multipart with a PDF in the image field",
            files={"image": ("a.pdf", PDF, "application/pdf")},
            status=415,
            type="unsupported_media_type",
        ),
        Case(  # no boundary: the frontend passes the body through as it is, and it is no image
            "multipart without boundary",
            b"--x\r\nnot a form\r\n--x--\r\n",
            "multipart/form-data",
            status=400,
            type="bad_image",
        ),
        Case(
            "multipart body that is not multipart",
            b"garbage" * 50,
            "multipart/form-data; boundary=zzz",
            status=400,
            type="bad_request",
        ),
        # JSON
        Case("JSON base64 image", json.dumps({"image": b64(good)}).encode(), "application/json"),
        Case(
            "JSON data URL", json.dumps({"image": "data:image/jpeg;base64," + b64(good)}).encode(), "application/json"
        ),
        Case(
            "JSON invalid base64",
            json.dumps({"image": "!!!not base64***"}).encode(),
            "application/json",
            status=400,
            type="bad_request",
        ),
        Case(
            "JSON wrong field",
            json.dumps({"picture": b64(good)}).encode(),
            "application/json",
            status=400,
            type="bad_request",
        ),
        Case(
            "JSON image not a string",
            json.dumps({"image": [1, 2, 3]}).encode(),
            "application/json",
            status=400,
            type="bad_request",
        ),
        Case("JSON not an object", b"[1, 2, 3]", "application/json", status=400, type="bad_request"),
        Case("malformed JSON", b'{"image": "abc', "application/json", status=400, type="bad_request"),
        Case("JSON with invalid UTF-8", b'{"image": "\xff\xfe"}', "application/json", status=400, type="bad_request"),
        Case(
            "JSON base64 of garbage",
            json.dumps({"image": b64(b"not an image")}).encode(),
            "application/json",
            status=400,
            type="bad_image",
        ),
        Case(
            "JSON data URL of SVG",
            json.dumps({"image": "data:image/svg+xml;base64," + b64(SVG)}).encode(),
            "application/json",
            status=415,
            type="unsupported_media_type",
        ),
        Case(
            "JSON sent as text/plain",
            json.dumps({"image": b64(good)}).encode(),
            "text/plain",
            status=415,
            type="unsupported_media_type",
        ),
    ]


# --- server observations -------------------------------------------------------------------------


def worker_identities(server: Server) -> set[tuple[str, int, str]]:
    """(id, pid, startTime) of each worker, from the management API: changes when a worker restarts."""
    return {(w["id"], w["pid"], w["startTime"]) for m in server.model_status() for w in m.get("workers", [])}


def metric_value(server: Server, name: str) -> float:
    """Sum of a Prometheus metric's samples on the server's metrics port (0 when absent)."""
    text = requests.get(server.metrics_url, timeout=10).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + "{"))
