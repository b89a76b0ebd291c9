"""Calibrated probabilities and the review policy, as a checkpoint's ``calibration`` entry holds them.

``training.calibrate`` fits both on images the model never trained on and stores them in the checkpoint (and the
model card); :class:`~handlers.classifier.ArtClassifier` applies them wherever the model runs:

* ``temperature`` T: probabilities are ``softmax(logits / T)`` instead of ``softmax(logits)``; T is one number,
  or one per class, taken by the class a row predicts. T > 1 softens an over-confident answer, T < 1 sharpens an
  under-confident one; neither changes which label ranks first.
* ``review_below``: a tag whose calibrated probability is below it needs a person's review; the tags at or above
  it were wrong at most ``max_error`` of the time on the calibration images, with ``confidence`` (a
  Clopper-Pearson bound, docs/model.md); above 1 when no threshold could promise that, so every tag goes to
  review. ``None``: no policy, nothing is said about review. ``max_error``: the rate the policy promises (the
  first of its ladder that some threshold met), told in each answer so a client knows what ``review: false`` means.

A checkpoint without the entry serves as before: T = 1 and no review field in the answers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Calibration:
    temperature: float | tuple[float, ...] = 1.0
    review_below: float | None = None
    max_error: float | None = None

    def __post_init__(self) -> None:
        values = self.temperature if isinstance(self.temperature, tuple) else (self.temperature,)
        if not values or not all(t > 0 for t in values):
            raise ValueError(f"calibration temperatures must be positive, got {self.temperature}")
        if self.review_below is not None and not 0.0 <= self.review_below <= 2.0:
            raise ValueError(f"review_below must be a probability (above 1: review every tag), got {self.review_below}")

    @classmethod
    def from_checkpoint(cls, ckpt: Mapping) -> Calibration:
        """The checkpoint's ``calibration`` entry; the identity (T = 1, no policy) when it has none."""
        entry = ckpt.get("calibration") or {}
        policy = entry.get("review_policy") or {}
        below = policy.get("review_below")
        t = entry.get("temperature", 1.0)
        temperature = tuple(float(x) for x in t) if isinstance(t, list | tuple) else float(t)
        classes = len(ckpt.get("labels") or ())
        if isinstance(temperature, tuple) and len(temperature) != classes:
            raise ValueError(f"the checkpoint has {len(temperature)} temperatures for {classes} labels")
        rate = policy.get("max_error") if below is not None else None
        return cls(temperature, None if below is None else float(below), None if rate is None else float(rate))

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """Softmax of ``logits / T`` over classes, in float32 whatever dtype the model ran in."""
        logits = logits.float()
        if isinstance(self.temperature, tuple):
            per_row = torch.tensor(self.temperature, device=logits.device)[logits.argmax(1)]
            return torch.softmax(logits / per_row[:, None], dim=1)
        return torch.softmax(logits / self.temperature, dim=1)

    def review(self, probability: float) -> bool | None:
        """Whether a tag with this calibrated top-1 probability needs review; None without a policy."""
        return None if self.review_below is None else probability < self.review_below
