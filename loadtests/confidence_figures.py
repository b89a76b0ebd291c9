"""The default model's calibration and review policy as a figures file (``results/confidence/figures.json``), made
from the ``calibration`` entry that ``training.calibrate`` (or ``training.export``) wrote into the model card."""

from __future__ import annotations

import json
from pathlib import Path

from deploy import ROOT
from training.calibrate import ladder_rates, policy_rule


def _t(value: float | list[float], labels: list[str]) -> str:
    if isinstance(value, int | float):
        return f"{value:.3f} (one for all classes)"
    return ", ".join(f"{label} {t:.2f}" for label, t in zip(labels, value, strict=True)) + " (by predicted class)"


def _ece_row(name: str, m: dict) -> list[str]:
    floor = m["ece_if_perfectly_calibrated"]
    return [
        f"ECE, {name} ({m['n_images']} images)",
        f"{m['ece_before']:.3f}",
        f"{m['ece_after']:.3f}",
        f"{floor['q05']:.3f}-{floor['q95']:.3f}",
    ]


def confidence_figures(card_path: Path) -> dict | None:
    """The figures file for the card's calibration, or None when the card has none."""
    card = json.loads(card_path.read_text(encoding="utf-8"))
    cal = card.get("calibration")
    if not cal:
        return None
    pol, val = cal["review_policy"], cal["validation"]
    out = val["policy"]
    bound = "none qualified" if pol["upper_bound"] is None else f"{pol['upper_bound']:.4f}"
    rows = [
        _ece_row("art5/val, chose nothing", val),
        _ece_row("calibration images not used for the fit", cal["held_out"]),
        ["negative log-likelihood, art5/val", f"{val['nll_before']:.3f}", f"{val['nll_after']:.3f}", "-"],
    ]
    policy_rows = [
        ["temperature", _t(cal["temperature"], card["labels"])],
        ["review policy", policy_rule(pol["review_below"])],
        [
            "its promise",
            f"accepted tags wrong at most {pol['max_error']:.1%}, with {pol['confidence']:.0%} confidence"
            + (f" (the first of {ladder_rates(pol)} some threshold met)" if ladder_rates(pol) else ""),
        ],
        [
            "chosen on",
            f"{pol['n_images']} calibration images: {pol['accepted']} accepted, {pol['errors']} wrong, "
            f"upper bound {bound} (best these images allow: {pol['best_possible_bound']:.4f})",
        ],
        [
            "art5/val under the policy",
            f"{out['accepted']} of {out['n_images']} accepted ({out['accepted_share']:.1%}), "
            f"{out['accepted_errors']} of them wrong; {out['errors_total']} wrong answers in all",
        ],
    ]
    notes = [f"{name}: {value}" for name, value in policy_rows] + [
        f"Images: {cal['images']}.",
        "The ECE range is what a perfectly calibrated model with the same probabilities would show on that many "
        "images (labels drawn from its own probabilities, 5 %-95 %): a figure inside it cannot be told apart from "
        "perfect calibration.",
    ]
    return {
        "title": f"Calibration and review policy of the default model ({card['version']}).",
        "date": cal["created_utc"][:10],
        "machine": {"device": cal.get("device", "cpu"), "torch": cal.get("torch"), "gpu": None},
        "command": cal["command"],
        "source": card_path.relative_to(ROOT).as_posix(),
        "columns": ["measure", "before calibration", "calibrated (as served)", "perfectly calibrated would show"],
        "rows": rows,
        "notes": notes,
        "headline": [
            [
                "review policy on art5/val",
                f"{out['accepted_share']:.0%} of tags accepted, {out['accepted_errors']} of {out['accepted']} wrong "
                f"(promise: at most {pol['max_error']:.0%} wrong, {pol['confidence']:.0%} confidence)",
            ],
            ["calibration error (ECE) on art5/val", f"{val['ece_before']:.3f} before, {val['ece_after']:.3f} after"],
        ],
    }
