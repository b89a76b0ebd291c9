"""Property tests (hypothesis) over the request parsers: whatever the body, headers or form, each request gets a
prediction-ready image or the project's ``InputError`` (a 4xx), never another exception (which would be a 500).

Strategies are in tests/strategies.py (request shapes); tests/unit/test_fuzz.py runs the same shapes through the
handler. Derandomized (a fixed set of examples per run) so CI is repeatable; hunt locally with
``ARTSERVE_FUZZ_EXAMPLES=3000 ARTSERVE_FUZZ_RANDOM=1`` (as test_fuzz.py).
"""

from __future__ import annotations

import os

import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from handlers.errors import InputError
from handlers.payload import extract_image, media_type
from handlers.preprocessing import Limits, PreprocessConfig, preprocess_bytes
from tests.strategies import SEEDS, content_types, data_urls, json_bodies, request_fields

PROPERTY = settings(
    max_examples=int(os.environ.get("ARTSERVE_FUZZ_EXAMPLES", "200")),
    deadline=None,
    derandomize=os.environ.get("ARTSERVE_FUZZ_RANDOM", "") == "",
    suppress_health_check=[HealthCheck.too_slow],
)
CFG = PreprocessConfig(resize=40, crop=32)
LIMITS = st.sampled_from([64, 4096, 20 * 1024 * 1024])


def image_or_input_error(fields: dict, ct: str | None, max_bytes: int) -> torch.Tensor | InputError:
    """The parse + decode chain of one request; any exception that is not an ``InputError`` fails the test."""
    try:
        return preprocess_bytes(extract_image(fields, ct, max_bytes), CFG, Limits(max_bytes=max_bytes))
    except InputError as e:
        assert 400 <= e.status < 500 and e.message, f"an InputError must be a 4xx with a message: {e.to_body()}"
        return e


@pytest.mark.filterwarnings("ignore::UserWarning")
@PROPERTY
@given(request=request_fields(), max_bytes=LIMITS)
@example(request=({"body": (None, b"[" * 100_000 + b"]" * 100_000)}, "application/json"), max_bytes=2**24)
def test_any_request_gets_an_image_or_a_4xx(request, max_bytes):
    fields, ct = request
    out = image_or_input_error(fields, ct, max_bytes)
    if isinstance(out, torch.Tensor):
        assert out.shape == (3, 32, 32) and out.dtype == torch.uint8, f"not prediction-ready: {out.shape} {out.dtype}"


@PROPERTY
@given(url=data_urls(), extra=st.booleans())
def test_any_data_url_gets_an_image_or_a_4xx(url, extra):
    doc = {"image": url, **({"note": url} if extra else {})}
    image_or_input_error({"body": (None, doc)}, "application/json", 20 * 1024 * 1024)


@PROPERTY
@given(body=json_bodies(), ct=content_types())
def test_any_json_body_under_any_content_type(body, ct):
    image_or_input_error({"body": (None, body)}, ct, 20 * 1024 * 1024)


@PROPERTY
@given(parts=st.lists(st.sampled_from(sorted(SEEDS.values())) | st.binary(max_size=32), max_size=8), ct=content_types())
def test_multipart_with_any_number_of_parts(parts, ct):
    fields = {f"part{i}": (ct, value) for i, value in enumerate(parts)}
    out = image_or_input_error(fields, "multipart/form-data; boundary=x", 20 * 1024 * 1024)
    if len(parts) > 1:
        assert isinstance(out, InputError), "a form of several parts without an image field must be refused"


@PROPERTY
@given(ct=content_types())
def test_media_type_never_fails(ct):
    parsed = media_type(ct)
    assert parsed == parsed.strip().lower() and ";" not in parsed, f"{ct!r} parsed to {parsed!r}"
