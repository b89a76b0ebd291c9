"""Validation of a prediction body, shared by the load test (kept free of Locust, which patches threads)."""

from __future__ import annotations

PROBABILITY_EPS = 1e-3


def check_prediction(body: object, labels: frozenset[str], model: str) -> str | None:
    """None when ``body`` is a valid prediction, else what is wrong with it."""
    if not isinstance(body, dict):
        return f"body is not a JSON object: {str(body)[:100]}"
    top_k = body.get("top_k")
    if not isinstance(top_k, list) or not top_k:
        return f"no top_k list in {sorted(body)}"
    unknown = [entry.get("label") for entry in top_k if entry.get("label") not in labels]
    if body.get("label") not in labels or unknown:
        return f"label(s) {unknown or [body.get('label')]} not in the label set {sorted(labels)}"
    probs = [entry.get("probability") for entry in top_k]
    if not all(isinstance(p, (int, float)) and 0.0 <= p <= 1.0 for p in probs):
        return f"probabilities outside [0, 1]: {probs}"
    if sum(probs) > 1.0 + PROBABILITY_EPS:
        return f"top_k probabilities sum to {sum(probs):.6f} > 1"
    if len(top_k) == len(labels) and abs(sum(probs) - 1.0) > PROBABILITY_EPS:
        return f"probabilities over all {len(labels)} labels sum to {sum(probs):.6f}, not 1"
    if probs != sorted(probs, reverse=True) or body.get("label") != top_k[0]["label"]:
        return "top_k is not sorted best-first or the top label differs from top_k[0]"
    if body.get("model") != model:
        return f"answered by model {body.get('model')!r}, expected {model!r}"
    return None
