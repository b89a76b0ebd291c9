"""Generated requests for the property and fuzz tests: valid seed images in every supported format, their
mutations, and the request shapes TorchServe's worker can hand the handler (content types, JSON bodies, base64 and
data URLs, multipart forms). Used by ``tests/unit/test_payload_properties.py``, ``tests/unit/test_fuzz.py`` and
``tests/integration/test_hostile.py::test_mutated_images_over_http``; the catalogued cases with exact answers are
``tests/hostile.py``.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from hypothesis import strategies as st

from tests.hostile import b64, png
from tests.images import encode, jpeg, pattern

VALID_SEEDS: dict[str, Callable[[], bytes]] = {
    "jpeg": lambda: jpeg((80, 60)),
    "png": lambda: png(pattern((60, 80))),
    "png_rgba": lambda: png(pattern((48, 48)).convert("RGBA")),
    "gif": lambda: encode(pattern((48, 40)).convert("P"), "GIF"),
    "webp": lambda: encode(pattern((64, 48)), "WEBP"),
    "bmp": lambda: encode(pattern((40, 40)), "BMP"),
    "tiff": lambda: encode(pattern((40, 56)), "TIFF"),
}
"""Small valid images in every supported format: seeds for mutation fuzzing."""

SEEDS = {name: make() for name, make in VALID_SEEDS.items()}


@st.composite
def mutated_image(draw) -> bytes:
    """A valid seed image with a few byte flips, a truncation, an insertion or a header overwrite."""
    data = bytearray(SEEDS[draw(st.sampled_from(sorted(SEEDS)))])
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "truncate", "insert", "header", "zero_run"]))
        pos = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "flip" and data:
            data[pos] ^= draw(st.integers(1, 255))
        elif kind == "truncate":
            del data[pos:]
        elif kind == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=64))
        elif kind == "header":  # the first 64 bytes hold sizes, modes and chunk lengths
            at = draw(st.integers(0, min(63, max(0, len(data) - 1))))
            data[at : at + 4] = draw(st.binary(min_size=4, max_size=4))
        elif kind == "zero_run":
            data[pos : pos + 32] = bytes(32)
    return bytes(data)


# --- request shapes for the property tests (tests/unit/test_payload_properties.py, test_fuzz.py) ----------------

#: JSON values of any type and nesting, as TorchServe's worker hands a decoded application/json body over.
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=25,
)
#: Base types and parameters that clients send, plus anything at all.
MEDIA_TYPES = ["image/jpeg", "image/png", "image/svg+xml", "image/heic", "application/octet-stream",
               "application/json", "text/json", "multipart/form-data", "application/x-www-form-urlencoded",
               "text/plain", "application/pdf", "image/", "IMAGE/JPEG", ""]  # fmt: skip
PARAMETERS = ["", "; charset=utf-8", ";charset=\"weird\"", "; charset=ebcdic; q=0.1", "; boundary=--x", ";", ";;=;",
              "; name*=UTF-8''%E2%9C%93", "\t; x=\u00e9", "; base64"]  # fmt: skip


@st.composite
def content_types(draw) -> str | None:
    """A Content-Type header: a known media type with odd parameters, any text, or none at all."""
    if draw(st.booleans()):
        return draw(st.none() | st.text(max_size=30))
    return draw(st.sampled_from(MEDIA_TYPES)) + draw(st.sampled_from(PARAMETERS))


def base64_texts() -> st.SearchStrategy[str]:
    """Valid base64 of a real image or of random bytes, or text that is not valid base64."""
    valid = st.sampled_from(sorted(SEEDS.values())) | st.binary(max_size=64)
    return st.one_of(valid.map(b64), st.text(max_size=40), st.just("===="), st.just("aGVsbG8=\n aGVsbG8="))


@st.composite
def data_urls(draw) -> str:
    """``data:<any type>[;params][;base64],<payload>``, the payload valid or not."""
    mime = draw(st.sampled_from(MEDIA_TYPES) | st.text(max_size=20))
    flags = draw(st.sampled_from(["", ";base64", ";charset=x;base64", ";BASE64", ";base64;x=1"]))
    return f"data:{mime}{flags},{draw(base64_texts())}"


def json_bodies() -> st.SearchStrategy[object]:
    """What a JSON request's field can hold: any JSON value, an object with an ``image`` of any kind, or bytes
    that are not JSON (TorchServe forwards those undecoded), up to deeply nested arrays."""
    image = json_values | base64_texts() | data_urls()
    with_image = st.fixed_dictionaries({"image": image}, optional={"extra": json_values})
    depth = st.integers(1, 200_000).map(lambda n: b"[" * n + b"]" * n)
    return st.one_of(json_values, with_image, st.binary(max_size=64), depth, with_image.map(lambda d: json.dumps(d)))


def field_values() -> st.SearchStrategy[object]:
    """One request field's value as TorchServe's worker passes it: bytes, text or decoded JSON."""
    return st.one_of(
        st.sampled_from(sorted(SEEDS.values())), st.binary(max_size=64), st.text(max_size=20), json_bodies()
    )


@st.composite
def request_fields(draw) -> tuple[dict, str | None]:
    """A request's fields ``{name: (part content type, value)}`` and its Content-Type: raw bodies, JSON bodies
    and multipart forms of any number of parts."""
    ct = draw(content_types())
    names = st.sampled_from(["body", "data", "image", "file"]) | st.text(max_size=8)
    parts = draw(st.dictionaries(names, st.tuples(content_types(), field_values()), max_size=5))
    if draw(st.booleans()):  # a JSON body, as most JSON clients send it
        parts = {"body": (None, draw(json_bodies()))}
        ct = "application/json" + draw(st.sampled_from(PARAMETERS))
    return parts, ct
