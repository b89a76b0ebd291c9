"""Logits -> probabilities -> the documented response body."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def probabilities(logits: torch.Tensor) -> torch.Tensor:
    """Softmax over classes, computed in float32 whatever dtype the model ran in."""
    return torch.softmax(logits.float(), dim=1)


def prediction_body(
    probs: torch.Tensor,
    labels: Sequence[str],
    top_k: int,
    model_name: str,
    model_version: str,
    review_below: float | None = None,
    review_max_error: float | None = None,
) -> dict:
    """One image's response: the top label, its probability and the ``top_k`` best labels; under a review policy
    (``review_below``, :mod:`handlers.calibration`) also whether a person should check the label, the policy's
    threshold and the error rate it promises for the labels it accepts (``review_max_error``, when known)."""
    k = max(1, min(top_k, len(labels)))
    values, indices = torch.topk(probs, k)
    ranked = [
        {"label": labels[i], "probability": round(float(p), 6)}
        for p, i in zip(values.tolist(), indices.tolist(), strict=True)
    ]
    body = {
        "label": ranked[0]["label"],
        "probability": ranked[0]["probability"],
        "top_k": ranked,
        "model": model_name,
        "model_version": model_version,
    }
    if review_below is not None:
        body["review"] = bool(float(values[0]) < review_below)
        body["review_below"] = round(float(review_below), 6)
        if review_max_error is not None:
            body["review_max_error"] = round(float(review_max_error), 6)
    return body
