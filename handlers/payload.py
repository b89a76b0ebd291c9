"""Find the image bytes in one HTTP request, whatever encoding the client chose.

Accepted: a raw body (``Content-Type: image/*`` or ``application/octet-stream``), a
``multipart/form-data`` file field (``image``, ``file`` or ``data``, or the only field), and JSON
``{"image": "<base64>"}`` (a ``data:image/...;base64,`` prefix is allowed). Engine-agnostic: the caller
passes the request's fields as ``{name: (content_type, value)}`` and the request's Content-Type.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping

from handlers.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType

FORM_FIELDS = ("image", "file", "data")
RAW_FIELDS = ("body", "data")
UNSUPPORTED_IMAGE_TYPES = {
    "image/svg+xml": "SVG",
    "image/heic": "HEIC",
    "image/heif": "HEIF",
    "image/avif": "AVIF",
    "application/pdf": "PDF",
}
ACCEPTED = (
    "send image/* or application/octet-stream bytes, a multipart/form-data 'image' field, or JSON {\"image\": base64}"
)

Fields = Mapping[str, tuple[str | None, object]]


def media_type(content_type: str | None) -> str:
    """``"Image/JPEG; charset=x"`` -> ``"image/jpeg"``; missing -> ``""``."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def _as_bytes(value: object) -> bytes:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, (dict, list)):  # already JSON-decoded by the engine
        try:
            return json.dumps(value).encode("utf-8")
        except RecursionError:
            raise BadRequest("the JSON body is nested too deeply") from None
    raise BadRequest(f"unexpected request field type {type(value).__name__}")


def _check_declared_type(ct: str, where: str) -> None:
    if ct in UNSUPPORTED_IMAGE_TYPES:
        raise UnsupportedMediaType(
            f"{UNSUPPORTED_IMAGE_TYPES[ct]} ({where} {ct}) is not supported; send JPEG, PNG, WebP, BMP, TIFF or GIF"
        )


def _from_json(raw: bytes, max_bytes: int) -> bytes:
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BadRequest(f"the body is not valid JSON: {e}") from None
    except RecursionError:  # the C scanner gives up on deep nesting ([[[[...]]]]) with a RecursionError
        raise BadRequest("the JSON body is nested too deeply") from None
    if not isinstance(doc, dict) or "image" not in doc:
        raise BadRequest('the JSON body needs an "image" field holding the base64-encoded image')
    encoded = doc["image"]
    if not isinstance(encoded, str):
        raise BadRequest('"image" must be a base64 string')
    if encoded.startswith("data:"):
        header, _, encoded = encoded.partition(",")
        if ";base64" not in header:
            raise BadRequest('a data URL in "image" must be base64-encoded (data:image/...;base64,...)')
        _check_declared_type(media_type(header[5:]), "data URL type")
    if len(encoded) * 3 // 4 > max_bytes:
        raise PayloadTooLarge(
            f"the base64 image decodes to more than {max_bytes} bytes (set ARTSERVE_MAX_BYTES to raise it)"
        )
    try:
        return base64.b64decode("".join(encoded.split()), validate=True)
    except (binascii.Error, ValueError) as e:
        raise BadRequest(f'"image" is not valid base64: {e}') from None


def extract_image(fields: Fields, content_type: str | None, max_bytes: int) -> bytes:
    """Return the image bytes of one request, or raise an ``InputError`` that says what to send."""
    ct = media_type(content_type)
    if ct == "multipart/form-data":
        names = [n for n in FORM_FIELDS if n in fields] or (list(fields) if len(fields) == 1 else [])
        if not names:
            raise BadRequest(f"the multipart form has no 'image' or 'file' field (fields: {sorted(fields)})")
        part_type, value = fields[names[0]]
        _check_declared_type(media_type(part_type), "form part type")
        return _as_bytes(value)

    name = next((n for n in RAW_FIELDS if n in fields), None)
    if ct == "application/x-www-form-urlencoded":
        raise UnsupportedMediaType(
            "Content-Type application/x-www-form-urlencoded cannot carry an image (curl --data-binary sends it "
            f"unless told otherwise: add -H 'Content-Type: image/jpeg'); {ACCEPTED}"
        )
    if name is None:
        if not fields:
            raise BadRequest(f"the request has no body; {ACCEPTED}")
        raise BadRequest(f"no image in the request (fields: {sorted(fields)}); {ACCEPTED}")
    raw = _as_bytes(fields[name][1])
    if ct in ("application/json", "text/json"):
        return _from_json(raw, max_bytes)
    _check_declared_type(ct, "Content-Type")
    if ct in ("", "application/octet-stream") or ct.startswith("image/"):
        return raw
    raise UnsupportedMediaType(f"Content-Type {ct} is not accepted; {ACCEPTED}")
