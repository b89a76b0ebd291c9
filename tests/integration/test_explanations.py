"""The explanations API (Grad-CAM) and the CORS headers, against a real TorchServe serving the tiny model."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from deploy.server import CONFIG, read_properties
from tests.images import ART5_LABELS, corrupt_jpeg, jpeg

pytestmark = pytest.mark.integration


def post_together(urls_and_payloads: list[tuple[str, bytes]]) -> list[tuple[int, dict]]:
    """Post every payload at the same moment, so the frontend batches them together."""
    gate = threading.Barrier(len(urls_and_payloads))

    def post(item: tuple[str, bytes]) -> tuple[int, dict]:
        url, data = item
        gate.wait()
        r = requests.post(url, data=data, headers={"Content-Type": "image/jpeg"}, timeout=120)
        return r.status_code, r.json()

    with ThreadPoolExecutor(max_workers=len(urls_and_payloads)) as pool:
        return list(pool.map(post, urls_and_payloads))


def test_explanations_answer_per_image_with_their_own_4xx(ts_server):
    explain_url = f"{ts_server.inference_url}/explanations/{ts_server.name}"
    image = jpeg((120, 90), seed=4)
    items = [(explain_url, image)] * 5 + [(explain_url, corrupt_jpeg())] + [(ts_server.predict_url, image)] * 2
    answers = post_together(items)

    statuses = [status for status, _ in answers]
    assert statuses == [200] * 5 + [400] + [200] * 2, f"per-request statuses: {statuses}"
    assert answers[5][1]["type"] == "bad_image", f"the corrupt image's own error: {answers[5][1]}"
    prediction = answers[6][1]
    assert "top_k" in prediction and "cam" not in prediction, f"a prediction got an explanation: {prediction}"
    for _, body in answers[:5]:
        assert body["method"] == "grad-cam" and body["explains"] == body["label"] == prediction["label"], body
        assert body["label"] in ART5_LABELS and abs(body["probability"] - prediction["probability"]) < 1e-5, body
        cam = body["cam"]
        assert (body["height"], body["width"]) == (4, 4), f"tiny_vgg at 64 px has a 4x4 map: {body}"
        assert len(cam) == 4 and all(len(row) == 4 for row in cam), f"cam is not 4x4: {cam}"
        assert all(0.0 <= v <= 1.0 for row in cam for v in row), f"cam values outside [0, 1]: {cam}"
        assert max(v for row in cam for v in row) in (0.0, 1.0), f"a map is scaled to peak 1 (or all 0): {cam}"
        assert 0 < body["crop_fraction"] <= 1 and body["model"] == ts_server.name and body["model_version"], body
    assert len({str(body["cam"]) for _, body in answers[:5]}) == 1, "the same image got different maps"


def test_cors_headers_follow_config_properties(ts_server):
    origin = read_properties(CONFIG)["cors_allowed_origin"]
    r = requests.post(
        ts_server.predict_url, data=jpeg(), headers={"Content-Type": "image/jpeg", "Origin": origin}, timeout=60
    )
    assert r.status_code == 200, f"prediction with an Origin header: {r.status_code} {r.text[:200]}"
    assert r.headers.get("Access-Control-Allow-Origin") == origin, f"CORS headers: {dict(r.headers)}"
    preflight = requests.options(
        ts_server.predict_url,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
        timeout=30,
    )
    allowed = preflight.headers.get("Access-Control-Allow-Headers", "").lower()
    assert preflight.status_code == 200 and "content-type" in allowed, (
        f"preflight: {preflight.status_code} {dict(preflight.headers)}"
    )
    assert "POST" in preflight.headers.get("Access-Control-Allow-Methods", ""), f"preflight: {dict(preflight.headers)}"
