"""Hostile input against a real TorchServe: each bad request gets its precise 4xx JSON error while the
valid images batched with it get 200, and the worker is never restarted."""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from hypothesis import HealthCheck, given, settings

from tests.hostile import Case, hostile_cases, metric_value, worker_identities
from tests.images import ART5_LABELS, jpeg
from tests.strategies import mutated_image

pytestmark = pytest.mark.integration


def send(url: str, case: Case) -> tuple[Case, int | None, object]:
    try:
        r = requests.post(url, timeout=60, **case.request_kwargs())
    except requests.RequestException as e:
        return case, None, f"{type(e).__name__}: {e}"
    try:
        return case, r.status_code, r.json()
    except ValueError:
        return case, r.status_code, r.text[:300]


def mismatch(case: Case, status: int | None, body: object) -> str | None:
    """Why this answer is wrong for ``case``, or None when it is exactly right."""
    where = f"{case.name!r}: got {status} {str(body)[:200]}"
    if status != case.status:
        return f"{where}; expected {case.status} {case.type or 'prediction'}"
    if not isinstance(body, dict):
        return f"{where}; the body is not a JSON object"
    if case.type is None:
        if body.get("label") not in ART5_LABELS or not 0 <= body.get("probability", -1) <= 1:
            return f"{where}; not a valid prediction body"
        return None
    if body.get("type") != case.type or body.get("code") != case.status or not body.get("error"):
        return f"{where}; expected {{error, code: {case.status}, type: {case.type}}}"
    return None


def test_hostile_inputs_mixed_with_valid_images(ts_server):
    """Every catalogued hostile request, shuffled among valid JPEGs and sent 12 at a time."""
    hostile = hostile_cases()
    valid = [Case(f"valid JPEG {i}", jpeg((96, 64), seed=i)) for i in range(len(hostile))]
    cases = hostile + valid
    random.Random(7).shuffle(cases)
    before = worker_identities(ts_server)
    batches_before = metric_value(ts_server, "ArtserveBatches")
    images_before = metric_value(ts_server, "ArtserveImages")

    with ThreadPoolExecutor(max_workers=12) as pool:
        answers = list(pool.map(lambda c: send(ts_server.predict_url, c), cases))

    wrong = [m for m in (mismatch(*a) for a in answers) if m]
    assert not wrong, f"{len(wrong)} of {len(cases)} requests got the wrong answer:\n" + "\n".join(wrong)
    after = worker_identities(ts_server)
    assert after == before, f"the worker was restarted by hostile input: {before} -> {after}"
    images = metric_value(ts_server, "ArtserveImages") - images_before
    batches = metric_value(ts_server, "ArtserveBatches") - batches_before
    assert batches < images, (
        f"{images:.0f} images went through {batches:.0f} batches: hostile and valid requests were never batched"
    )


def test_form_urlencoded_with_percent_bytes_is_a_frontend_error_not_a_worker_fault(ts_server):
    """Known TorchServe limitation (docs/security.md): the frontend URL-decodes form-urlencoded bodies
    itself and answers 500 ErrorDataDecoderException when a binary body has a stray '%'. The request
    never reaches the worker, which keeps running; bodies that do decode get the handler's 415."""
    before = worker_identities(ts_server)
    url = ts_server.predict_url
    r = requests.post(url, data=jpeg(), headers={"Content-Type": "application/x-www-form-urlencoded"}, timeout=30)
    assert r.status_code == 500 and r.json().get("type") == "ErrorDataDecoderException", (
        f"TorchServe's frontend changed how it treats binary form-urlencoded bodies: {r.status_code} {r.text[:200]};"
        " update docs/security.md and tests/hostile.py"
    )
    r = requests.post(url, data=b"\xff\xd8\xff", headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 415 and r.json()["type"] == "unsupported_media_type", f"{r.status_code} {r.text[:200]}"
    assert worker_identities(ts_server) == before, "the worker was restarted by a form-urlencoded body"


@settings(max_examples=8, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(body=mutated_image())
def test_mutated_images_over_http(ts_server, body):
    """A handful of the fuzz test's mutations through the real frontend: 200 prediction or 4xx JSON."""
    _, status, answer = send(ts_server.predict_url, Case("mutated", body, "application/octet-stream"))
    assert status is not None and status < 500, f"mutated image got {status}: {answer}"
    assert isinstance(answer, dict), f"mutated image got a non-JSON body: {answer}"
    if status == 200:
        assert answer.get("label") in ART5_LABELS, f"200 without a valid prediction: {answer}"
    else:
        assert 400 <= status < 500 and answer.get("code") == status and answer.get("error"), f"{status} {answer}"
