"""Which tags a curator must review: the model's review policy, or a threshold the run names.

A model calibrated by ``training.calibrate`` answers each prediction with ``review`` and ``review_below`` (the
policy's threshold on the calibrated probability, chosen so that the tags at or above it are wrong at most a
stated share of the time, with a stated confidence; docs/model.md). ``make tag`` flags by that policy unless
``--review-below`` names another threshold; a model without a policy falls back to 0.5. ``--max-error`` asks for
another error rate than the policy's: the model card's grid holds a bound for every threshold at once (Bonferroni
over the grid), so the lowest threshold whose bound is within the asked rate keeps the promise at the card's
confidence. The run records which rule it used, and the report shows the risk-coverage curve and how many wrong
tags to expect among the accepted.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from tagging.report_data import data_uri, save_png  # noqa: E402
from training.confidence import REVIEW_ALL, lowest_within, tightest_row  # noqa: E402

#: The threshold when neither the model nor the run names one (the rule before review policies existed).
FALLBACK_REVIEW_BELOW = 0.5


@dataclass
class ReviewRule:
    """``review_below``: the run's threshold, or None to take each record's model policy threshold."""

    review_below: float | None
    source: str
    policy: dict = field(default_factory=dict)  # the card's review_policy, when known

    def threshold(self, record: dict) -> float:
        if self.review_below is not None:
            return self.review_below
        policy = record.get("policy_review_below")
        return FALLBACK_REVIEW_BELOW if policy is None else float(policy)

    def needs_review(self, record: dict) -> bool:
        """A prediction whose top-1 probability is below the threshold (a failure has none: not for review)."""
        return record.get("probability") is not None and record["probability"] < self.threshold(record)

    def shown_threshold(self, records: Sequence[dict]) -> float:
        """One number for the histogram and the page: the run's, else the (first) policy threshold seen."""
        values = sorted({self.threshold(r) for r in records if r.get("probability") is not None})
        return values[0] if values else (self.review_below or FALLBACK_REVIEW_BELOW)


def card_policy(card_path: str | Path | None, versions: set[str]) -> dict:
    """The review policy of the model card at ``card_path`` when it describes the version that answered."""
    if not card_path or not Path(card_path).exists():
        return {}
    card = json.loads(Path(card_path).read_text(encoding="utf-8"))
    if card.get("version") not in versions:
        return {}
    return (card.get("calibration") or {}).get("review_policy") or {}


def resolve_rule(
    review_below: float | None,
    records: Sequence[dict],
    card_path: str | Path | None,
    max_error: float | None = None,
) -> ReviewRule:
    """The run's rule: ``--review-below`` when given, else ``--max-error`` on the card's grid, else the policy in the
    model's answers, else the fallback."""
    if review_below is not None:
        return ReviewRule(review_below, f"--review-below {review_below:g}")
    tagged = [r for r in records if r.get("label") is not None]
    if max_error is not None:
        return rule_for_error(max_error, card_policy(card_path, {str(r.get("model_version")) for r in tagged}))
    thresholds = sorted({float(r["policy_review_below"]) for r in tagged if r.get("policy_review_below") is not None})
    if not thresholds:
        return ReviewRule(None, f"no review policy in the model's answers: below {FALLBACK_REVIEW_BELOW:g}")
    versions = {str(r.get("model_version")) for r in tagged}
    policy = card_policy(card_path, versions)
    shown = ", ".join(f"{t:g}" for t in thresholds)
    return ReviewRule(None, f"the model's review policy: below {shown}", policy)


def rule_for_error(max_error: float, policy: dict) -> ReviewRule:
    """The lowest threshold of the card's grid whose bound is at most ``max_error`` (every tag to review when none
    is). Valid for any ``max_error`` chosen after the fact because the grid's bounds hold all at once."""
    grid = policy.get("grid") or []
    if not grid:
        raise ValueError(
            "--max-error needs the model card of the version that answered, with its review policy's grid of "
            "simultaneous bounds (training.calibrate writes it; --card names the card)"
        )
    row = lowest_within(grid, max_error)
    if row is None:
        tightest = tightest_row(grid)
        source = (
            f"--max-error {max_error:g}: no threshold of the model card's grid promises it (the tightest promise is "
            f"{tightest['upper_bound']:.1%}, below {tightest['review_below']:g}): every tag to review"
        )
        return ReviewRule(REVIEW_ALL, source, dict(policy, max_error=max_error, review_below=REVIEW_ALL))
    source = (
        f"--max-error {max_error:g}: below {row['review_below']:g}, the model card's lowest threshold whose bound "
        f"({row['upper_bound']:.1%}) is within it"
    )
    return ReviewRule(row["review_below"], source, dict(policy, max_error=max_error, review_below=row["review_below"]))


def risk_coverage_png(records: Sequence[dict], rule: ReviewRule, path: Path) -> bytes:
    """Share of tags accepted against the threshold, and (where true labels are known) the share of the accepted
    that are wrong; the run's threshold marked. Written to ``path``, bytes returned."""
    tagged = [r for r in records if r.get("probability") is not None]
    grid = [i / 100 for i in range(0, 100)]
    known = [r for r in tagged if r.get("true_label")]
    fig, ax = plt.subplots(figsize=(6.4, 3.2), dpi=100)
    ax.plot(grid, [sum(r["probability"] >= t for r in tagged) / max(1, len(tagged)) for t in grid], label="accepted")
    if known:
        errors = []
        for t in grid:
            accepted = [r for r in known if r["probability"] >= t]
            errors.append(sum(r["label"] != r["true_label"] for r in accepted) / len(accepted) if accepted else None)
        ax.plot(grid, errors, color="#d33", label="wrong among accepted (known labels)")
    ax.axvline(rule.shown_threshold(tagged), color="#555", linestyle="--", label="review below")
    ax.set_xlabel("threshold on the top-1 probability")
    ax.set_ylabel("share")
    ax.set_ylim(0, 1)
    ax.set_title("Risk and coverage")
    ax.legend(fontsize=8)
    return save_png(fig, path)


def summary(records: Sequence[dict], rule: ReviewRule) -> dict:
    """Accepted tags, the wrong ones to expect among them (the sum of 1 - p: right when p is calibrated) and, under
    a known policy, the most its bound allows; with true labels, the wrong ones seen."""
    accepted = [r for r in records if r.get("probability") is not None and not rule.needs_review(r)]
    known = [r for r in accepted if r.get("true_label")]
    out = {
        "rule": rule.source,
        "accepted": len(accepted),
        "expected_wrong_accepted": round(sum(1 - r["probability"] for r in accepted), 1),
    }
    if rule.policy.get("max_error") is not None:
        out["policy_max_error"] = rule.policy["max_error"]
        out["policy_confidence"] = rule.policy.get("confidence")
        out["policy_bound_wrong_accepted"] = round(rule.policy["max_error"] * len(accepted), 1)
    if known:
        out["known_accepted"] = len(known)
        out["known_wrong_accepted"] = sum(r["label"] != r["true_label"] for r in known)
    return out


def policy_html(records: Sequence[dict], rule: ReviewRule, png: bytes) -> str:
    """The report's paragraph on the review rule, with the risk-coverage picture."""
    s = summary(records, rule)
    parts = [f"Review rule: {html.escape(rule.source)}.", f"{s['accepted']} tags accepted without review;"]
    parts.append(f"about {s['expected_wrong_accepted']:g} of them are expected to be wrong (sum of 1 - probability).")
    if "policy_max_error" in s:
        p = rule.policy
        parts.append(
            f"The policy promises at most {p['max_error']:.1%} wrong among accepted tags "
            f"({s['policy_bound_wrong_accepted']:g} here) with {p.get('confidence', 0):.0%} confidence, for images "
            f"like the {p.get('n_images', '?')} calibration images it was chosen on."
        )
    if "known_wrong_accepted" in s:
        parts.append(
            f"Of {s['known_accepted']} accepted tags with a known label, {s['known_wrong_accepted']} are wrong."
        )
    uri = data_uri(png, "image/png")
    return f'<p class="note" id="review-rule">{" ".join(parts)}</p><img src="{uri}" alt="risk-coverage curve">'
