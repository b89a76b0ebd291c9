"""Validation of a prediction body, shared by the load test and the smoke check (kept free of Locust,
which patches threads)."""

from __future__ import annotations

from collections.abc import Collection

#: Answers round probabilities to 6 decimals: sums may miss 1 by a little, never by this much.
PROBABILITY_EPS = 1e-3


def check_prediction(body: object, labels: Collection[str] | None = None, model: str | None = None) -> str | None:
    """None when ``body`` is a valid prediction, else what is wrong with it.

    ``labels``: the model's label set, which every label must belong to (None: any label); ``model``: the
    model name the answer must carry (None: not checked).
    """
    if not isinstance(body, dict):
        return f"body is not a JSON object: {str(body)[:100]}"
    top_k = body.get("top_k")
    if not isinstance(top_k, list) or not top_k or not all(isinstance(entry, dict) for entry in top_k):
        return f"no top_k list in {sorted(body)}"
    if labels is None and not body.get("label"):
        return f"no label in {sorted(body)}"
    if labels is not None:
        unknown = [entry.get("label") for entry in top_k if entry.get("label") not in labels]
        if body.get("label") not in labels or unknown:
            return f"label(s) {unknown or [body.get('label')]} not in the label set {sorted(labels)}"
    probs = [entry.get("probability") for entry in top_k]
    if not all(isinstance(p, (int, float)) and 0.0 <= p <= 1.0 for p in probs):
        return f"probabilities outside [0, 1]: {probs}"
    if sum(probs) > 1.0 + PROBABILITY_EPS:
        return f"top_k probabilities sum to {sum(probs):.6f} > 1"
    if labels is not None and len(top_k) == len(labels) and abs(sum(probs) - 1.0) > PROBABILITY_EPS:
        return f"probabilities over all {len(labels)} labels sum to {sum(probs):.6f}, not 1"
    if probs != sorted(probs, reverse=True) or body.get("label") != top_k[0].get("label"):
        return "top_k is not sorted best-first or the top label differs from top_k[0]"
    if model is not None and body.get("model") != model:
        return f"answered by model {body.get('model')!r}, expected {model!r}"
    return None
