"""What a file's structure will cost to decode, read from its bytes before Pillow parses anything.

The byte and pixel limits bound what an image *is*; these checks bound what it *costs*, for each supported format,
where decoding work can grow beyond the pixel count (``docs/security.md``, "Decode cost"):

* JPEG: every scan of a progressive JPEG passes over the whole image, so a file that repeats one small scan
  thousands of times decodes for minutes. Scans are counted (``FF DA`` from the first scan to the end of the first
  image: inside entropy-coded data ``FF`` is only ever followed by ``00`` or a restart marker, so a regular expression
  finds the markers alone) and refused over :data:`MAX_JPEG_SCANS`; markers before and between scans (each parsed on
  its own) over :data:`MAX_JPEG_MARKERS`.
  Arithmetic, lossless and hierarchical JPEGs (no browser decodes them) are refused.
* PNG: Pillow handles every chunk in Python, so chunks over :data:`MAX_PNG_CHUNKS` are refused; an eXIf chunk (parsed
  in Python when orientation is applied) over :data:`MAX_EXIF_BYTES`.
* GIF: extension blocks before the first frame are parsed in Python: over :data:`MAX_GIF_BLOCKS` are refused. Only the
  first frame is ever decoded.
* TIFF: strips and tiles each become a Python object: over :data:`MAX_TIFF_BLOCKS` are refused, and so are first
  directories of over :data:`MAX_TIFF_TAGS` tags (each parsed in Python); compressions other
  than none, LZW, Deflate and PackBits (JPEG-in-TIFF can hide a scan bomb per strip; fax, JPEG 2000, ...) and
  BigTIFF are refused. Only the first page is decoded.
* BMP: RLE-compressed bitmaps are decoded in pure Python by Pillow (seconds per megapixel): refused.
* WebP: container chunks are parsed in C; only the first frame of an animation is decoded.

Everything here is linear in the file's bytes at C speed (``bytes.count``, ``re``) or stops at a cap, so a check
costs well under a millisecond for ordinary images and a few milliseconds for a crafted 20 MiB file.
"""

from __future__ import annotations

import re
import struct

from handlers.errors import TooCostly, UnsupportedMediaType

#: Scans per JPEG image. libjpeg's progressive script writes 10 (colour) or 6 (grey), 18 for CMYK; mozjpeg and
#: Photoshop fewer. Each extra scan costs a pass over the image's coefficients (about 3-30 ms at 49 megapixels).
MAX_JPEG_SCANS = 24
#: Markers before the first scan (APPn, DQT, DHT, ...) and between scans; a photo with a large ICC profile has ~60.
MAX_JPEG_MARKERS = 1024
MAX_PNG_CHUNKS = 16384
#: An EXIF block, as a JPEG's APP1 segment can hold at most.
MAX_EXIF_BYTES = 65535
MAX_GIF_BLOCKS = 1024
MAX_TIFF_BLOCKS = 65536
#: Tags in a TIFF's first directory (parsed one by one in Python); a camera or scanner writes a few dozen.
MAX_TIFF_TAGS = 1024
#: TIFF compressions decoded at a cost bounded by the pixel count: none, LZW, Adobe Deflate, Deflate, PackBits.
TIFF_COMPRESSIONS = {1: "none", 5: "LZW", 8: "Deflate", 32946: "Deflate", 32773: "PackBits"}

_SOF_REFUSED = {0xC3: "lossless", 0xC5: "hierarchical", 0xC6: "hierarchical", 0xC7: "hierarchical"}
_SOF_REFUSED |= {m: "arithmetic-coded" for m in (0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF)}
#: A marker inside or between scans: FF then anything but 00 (stuffing), D0-D7 (restart) or FF (fill).
_JPEG_MARKER = re.compile(rb"\xff[\x01-\xcf\xd8-\xfe]")

_UNSUPPORTED_SIGNATURES = (
    (b"%PDF", "PDF"),
    (b"<svg", "SVG"),
    (b"<?xml", "SVG/XML"),
    (b"\x00\x00\x00\x0cjP  ", "JPEG 2000"),
    (b"\xff\x4f\xff\x51", "JPEG 2000"),
)
_HEIF_BRANDS = (b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1", b"avif", b"avis")


def sniff_unsupported(data: bytes) -> str | None:
    """The name of a format clients send that artserve does not decode (by magic bytes), else None."""
    head = data[:64].lstrip()
    for magic, name in _UNSUPPORTED_SIGNATURES:
        if head.startswith(magic):
            return name
    if data[4:8] == b"ftyp" and data[8:12] in _HEIF_BRANDS:
        return "HEIF/AVIF"
    return None


def check_structure(data: bytes) -> None:
    """Refuse ``data`` (``TooCostly`` 422 or ``UnsupportedMediaType`` 415) when its structure would make decoding
    cost more than its pixel count. Malformed structure is left to Pillow, which reports it as a bad image."""
    try:
        if data[:3] == b"\xff\xd8\xff":
            _check_jpeg(data)
        elif data[:8] == b"\x89PNG\r\n\x1a\n":
            _check_png(data)
        elif data[:6] in (b"GIF87a", b"GIF89a"):
            _check_gif(data)
        elif data[:4] in (b"II*\x00", b"MM\x00*"):
            _check_tiff(data)
        elif data[:4] in (b"II+\x00", b"MM\x00+"):
            raise UnsupportedMediaType("BigTIFF is not supported; send a classic TIFF, PNG or JPEG")
        elif data[:2] == b"BM":
            _check_bmp(data)
    except (struct.error, IndexError):  # truncated inside a header: Pillow says how
        return


def _too_many(what: str, count: int | str, limit: int, hint: str) -> TooCostly:
    return TooCostly(f"image has {count} {what}; the limit is {limit} ({hint})")


def _check_jpeg(data: bytes) -> None:
    first_scan = _check_jpeg_header(data)
    if first_scan is not None:
        _check_jpeg_scans(data, first_scan)


def _check_jpeg_header(data: bytes) -> int | None:
    """The segments before the first scan; where that scan starts (None: no scan, Pillow will say why)."""
    i, markers = 2, 0
    while True:  # segments before the first scan
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        markers += 1
        if markers > MAX_JPEG_MARKERS:
            raise _too_many(
                "markers before its first scan", f"over {MAX_JPEG_MARKERS}", MAX_JPEG_MARKERS, "a photo has a few dozen"
            )
        if marker in _SOF_REFUSED:
            kind = _SOF_REFUSED[marker]
            raise UnsupportedMediaType(f"{kind} JPEG is not supported; send a baseline or progressive JPEG")
        if marker == 0xDA:
            return i
        if marker == 0xD9:
            return None
        i += 2 if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7 else 2 + struct.unpack_from(">H", data, i + 2)[0]


def _check_jpeg_scans(data: bytes, i: int) -> None:
    scans = between = 0
    for found in _JPEG_MARKER.finditer(data, i):  # one pass, up to the first image's end: an MPO's others never decode
        marker = data[found.start() + 1]
        if marker == 0xD9:
            return
        if marker == 0xDA:
            scans += 1
            if scans > MAX_JPEG_SCANS:
                raise _too_many(
                    "JPEG scans", f"over {MAX_JPEG_SCANS}", MAX_JPEG_SCANS, "a progressive JPEG has about 10"
                )
        else:
            between += 1
            if between > MAX_JPEG_MARKERS:
                raise _too_many(
                    "markers between its scans", f"over {MAX_JPEG_MARKERS}", MAX_JPEG_MARKERS, "a few dozen"
                )


def _check_png(data: bytes) -> None:
    i, chunks = 8, 0
    while i + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, i)
        chunks += 1
        if chunks > MAX_PNG_CHUNKS:
            raise _too_many(
                "PNG chunks", f"over {MAX_PNG_CHUNKS}", MAX_PNG_CHUNKS, "encoders write at most a few thousand"
            )
        if kind == b"eXIf" and length > MAX_EXIF_BYTES:
            raise TooCostly(f"the PNG's EXIF block is {length} bytes; the limit is {MAX_EXIF_BYTES}")
        if kind == b"IEND":
            return
        i += 12 + length


def _check_gif(data: bytes) -> None:
    flags = data[10]
    i, blocks = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0), 0
    while i < len(data) and data[i] == 0x21:  # extensions before the first image descriptor (0x2C)
        i += 2
        while i < len(data) and data[i]:
            blocks += 1
            if blocks > MAX_GIF_BLOCKS:
                raise _too_many(
                    "GIF blocks before its first frame", f"over {MAX_GIF_BLOCKS}", MAX_GIF_BLOCKS, "a GIF has a few"
                )
            i += data[i] + 1
        i += 1


def _check_tiff(data: bytes) -> None:
    order = "<" if data[:2] == b"II" else ">"
    ifd = struct.unpack_from(order + "I", data, 4)[0]
    entries = struct.unpack_from(order + "H", data, ifd)[0]
    if entries > MAX_TIFF_TAGS:
        raise _too_many("tags in its first TIFF directory", entries, MAX_TIFF_TAGS, "a TIFF has a few dozen")
    compression, blocks = 1, 0
    for k in range(entries):  # the first page's tags; later pages are never decoded
        tag, kind, count = struct.unpack_from(order + "HHI", data, ifd + 2 + 12 * k)
        if tag == 259:
            fmt = "H" if kind == 3 else "I"
            compression = struct.unpack_from(order + fmt, data, ifd + 2 + 12 * k + 8)[0]
        elif tag in (273, 324):  # StripOffsets, TileOffsets
            blocks = max(blocks, count)
    if compression not in TIFF_COMPRESSIONS:
        raise UnsupportedMediaType(
            f"TIFF compression {compression} is not supported; send an uncompressed, LZW, Deflate or PackBits TIFF, "
            "or the picture as PNG or JPEG"
        )
    if blocks > MAX_TIFF_BLOCKS:
        raise _too_many("TIFF strips or tiles", blocks, MAX_TIFF_BLOCKS, "re-save it with larger strips")


def _check_bmp(data: bytes) -> None:
    header = struct.unpack_from("<I", data, 14)[0]
    if header >= 40 and struct.unpack_from("<I", data, 30)[0] in (1, 2):
        raise UnsupportedMediaType("RLE-compressed BMP is not supported (slow to decode); send PNG or JPEG")
