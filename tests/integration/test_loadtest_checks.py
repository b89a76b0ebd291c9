"""The load test's own logic without a server: body validation and /metrics parsing (no Locust import)."""

from __future__ import annotations

import pytest

from loadtests.metrics import from_scrapes, parse_exposition
from loadtests.validation import check_prediction
from tests.images import ART5_LABELS

LABELS = frozenset(ART5_LABELS)


def body(*pairs: tuple[str, float], model: str = "art-category") -> dict:
    top_k = [{"label": label, "probability": p} for label, p in pairs]
    return {"label": pairs[0][0], "probability": pairs[0][1], "top_k": top_k, "model": model}


def test_valid_prediction_passes():
    good = body(("painting", 0.7), ("drawings", 0.2), ("sculpture", 0.05))
    assert check_prediction(good, LABELS, "art-category") is None, "a valid body was rejected"


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (body(("cat", 0.9), ("painting", 0.1)), "not in the label set"),
        (body(("painting", 0.8), ("drawings", 0.5)), "sum to"),
        (body(("painting", 0.1), ("drawings", 0.5)), "sorted"),
        (body(("painting", 1.5)), "outside"),
        (body(*[(label, 0.1) for label in sorted(LABELS)]), "not 1"),
        (body(("painting", 0.9), model="other"), "answered by model"),
        ({"error": "x"}, "no top_k"),
        ([1, 2], "not a JSON object"),
    ],
)
def test_invalid_predictions_are_named(bad, reason):
    problem = check_prediction(bad, LABELS, "art-category")
    assert problem and reason in problem, f"expected a problem mentioning {reason!r}, got {problem!r}"


def test_metrics_parsing_and_scrape_deltas():
    text = (
        "# TYPE ts_inference_requests_total counter\n"
        'ts_inference_requests_total{model_name="m",model_version="default",hostname="h",} 10.0\n'
        'ts_inference_latency_microseconds{model_name="m",model_version="default",hostname="h",} 2000000.0\n'
        'ArtserveBatchSize{ModelName="m",Level="Model",Hostname="h",} 4.0\n'
    )
    samples = parse_exposition(text)
    assert ("ArtserveBatchSize", {"ModelName": "m", "Level": "Model", "Hostname": "h"}, 4.0) in samples, samples
    before = {
        "ts_inference_requests_total": 10,
        "ts_inference_latency_microseconds": 2e6,
        "ts_queue_latency_microseconds": 0,
    }
    after = {
        "ts_inference_requests_total": 14,
        "ts_inference_latency_microseconds": 4e6,
        "ts_queue_latency_microseconds": 4e5,
    }
    result = from_scrapes(before, after)
    assert result["server_avg_latency_ms"] == 500 and result["server_avg_queue_ms"] == 100, f"wrong averages: {result}"
