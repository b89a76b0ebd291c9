"""Finding the image in raw, multipart and JSON requests; clear errors for everything else."""

from __future__ import annotations

import base64
import json

import pytest

from handlers.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType
from handlers.payload import extract_image, media_type

IMG = b"\xff\xd8\xff\xe0 pretend jpeg"
LIMIT = 1 << 20


def raw(ct):
    return {"body": (ct, IMG)}


@pytest.mark.parametrize("ct", ["image/jpeg", "IMAGE/PNG; charset=binary", "application/octet-stream", None])
def test_raw_body(ct):
    assert extract_image(raw(ct), ct, LIMIT) == IMG, f"raw body with Content-Type {ct!r}"


def test_bytearray_values_become_bytes():
    out = extract_image({"body": ("image/jpeg", bytearray(IMG))}, "image/jpeg", LIMIT)
    assert isinstance(out, bytes) and out == IMG, f"extract_image returned {type(out).__name__}, not the image bytes"


@pytest.mark.parametrize("field", ["image", "file", "data", "whatever"])
def test_multipart_field(field):
    fields = {field: ("image/jpeg", IMG)}
    assert extract_image(fields, "multipart/form-data; boundary=x", LIMIT) == IMG, f"form field {field!r}"


def test_multipart_prefers_image_field_and_rejects_ambiguous_forms():
    fields = {"caption": ("text/plain", b"a painting"), "image": ("image/jpeg", IMG)}
    assert extract_image(fields, "multipart/form-data; boundary=x", LIMIT) == IMG, (
        "the image field was not preferred over the caption"
    )
    with pytest.raises(BadRequest, match="no 'image' or 'file' field"):
        extract_image({"a": (None, b"1"), "b": (None, b"2")}, "multipart/form-data; boundary=x", LIMIT)
    with pytest.raises(UnsupportedMediaType, match="SVG"):
        extract_image({"image": ("image/svg+xml", b"<svg/>")}, "multipart/form-data; boundary=x", LIMIT)


def body_json(doc) -> dict:
    return {"body": ("application/json", json.dumps(doc).encode())}


def test_json_base64_and_data_url():
    b64 = base64.b64encode(IMG).decode()
    assert extract_image(body_json({"image": b64}), "application/json", LIMIT) == IMG, (
        "plain base64 did not decode to the image"
    )
    assert extract_image(body_json({"image": "data:image/jpeg;base64," + b64}), "application/json", LIMIT) == IMG, (
        "a data URL did not decode to the image"
    )
    wrapped = "\n".join(b64[i : i + 8] for i in range(0, len(b64), 8))
    assert extract_image(body_json({"image": wrapped}), "application/json", LIMIT) == IMG, "line-wrapped base64"


@pytest.mark.parametrize(
    "body, message",
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", 'needs an "image" field'),
        (json.dumps({"img": "abc"}).encode(), 'needs an "image" field'),
        (json.dumps({"image": 42}).encode(), "must be a base64 string"),
        (json.dumps({"image": "!!!notbase64!!!"}).encode(), "not valid base64"),
        (json.dumps({"image": "data:image/jpeg,rawtext"}).encode(), "must be base64-encoded"),
        (b"\xff\xfe\x00", "not valid JSON"),
    ],
)
def test_bad_json_is_400(body, message):
    with pytest.raises(BadRequest, match=message):
        extract_image({"body": ("application/json", body)}, "application/json", LIMIT)


def test_json_over_limit_is_413_before_decoding():
    doc = {"image": "A" * 4000}
    with pytest.raises(PayloadTooLarge, match="ARTSERVE_MAX_BYTES"):
        extract_image(body_json(doc), "application/json", 1000)


@pytest.mark.parametrize(
    "ct, message",
    [
        ("application/x-www-form-urlencoded", "Content-Type: image/jpeg"),
        ("text/plain", "text/plain is not accepted"),
        ("image/svg+xml", "SVG"),
        ("image/heic", "HEIC"),
        ("application/pdf", "PDF"),
    ],
)
def test_wrong_content_types_are_415(ct, message):
    with pytest.raises(UnsupportedMediaType, match=message):
        extract_image(raw(ct), ct, LIMIT)


def test_no_body_is_400():
    with pytest.raises(BadRequest, match="no body"):
        extract_image({}, "image/jpeg", LIMIT)


def test_media_type():
    assert media_type("Image/JPEG; q=1") == "image/jpeg", "media type not lower-cased without parameters"
    assert media_type(None) == "", "a missing Content-Type is not the empty media type"
