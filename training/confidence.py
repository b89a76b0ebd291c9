"""The statistics behind calibrated confidence and the review policy (pure functions on tensors).

* :func:`fit_temperature`: the T that minimises the negative log-likelihood of ``softmax(logits / T)``
  (temperature scaling, Guo et al. 2017); :func:`fit_class_temperatures` one T per predicted class;
  :func:`choose_temperature` picks between them by cross-validation.
* :func:`expected_calibration_error` and :func:`reliability`: how far the top-1 probability is from the share of
  right answers, over equal-width probability bins.
* :func:`select_review_below`: the lowest threshold on the top-1 probability whose accepted tags are wrong at most
  ``max_error`` of the time, with probability ``1 - delta`` over the images it was chosen on: each threshold of a
  fixed grid gets a one-sided Clopper-Pearson bound at level ``delta / len(grid)`` (Bonferroni), so the bounds hold
  all at once (Learn then Test, Angelopoulos et al. 2021). The images must be exchangeable with the ones the policy
  will see and must not have chosen anything else (the temperature is fitted on other images).
* :func:`ranking_scores` and :func:`error_ranking`: how well a score puts the wrong answers last, the quality a
  review threshold rests on: the area under the risk-coverage curve (AURC; Geifman et al. 2019) and the error rate
  of the most confident answers, for the top-1 probability and for two scores known to rank better after label
  smoothing or distillation (the margin; the top centred logit over the logits' p-norm: Cattelan & Silva 2024,
  Xia et al. 2025).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from scipy.stats import beta

#: Thresholds the review policy may choose among (calibrated top-1 probabilities), fixed before any data.
REVIEW_GRID = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.93, 0.95, 0.97, 0.98, 0.99, 0.995)


def fit_temperature(logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor | None = None) -> float:
    """The temperature minimising the (``weights``-weighted) mean NLL of ``softmax(logits / T)``; found by
    golden-section search over log T in [log 0.05, log 20] (the NLL is convex in 1/T, so this finds its minimum)."""
    logits, targets = logits.double(), targets.long()
    weights = torch.ones(len(targets), dtype=torch.float64) if weights is None else weights.double()

    def loss(log_t: float) -> float:
        per_image = torch.nn.functional.cross_entropy(logits / math.exp(log_t), targets, reduction="none")
        return float((per_image * weights).sum() / weights.sum())

    lo, hi = math.log(0.05), math.log(20.0)
    ratio = (math.sqrt(5) - 1) / 2
    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = loss(a), loss(b)
    for _ in range(40):  # the bracket shrinks to 0.618^40 (~1e-8) of its width
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - ratio * (hi - lo)
            fa = loss(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = loss(b)
    return math.exp((lo + hi) / 2)


def class_weights(targets: torch.Tensor, classes: int) -> torch.Tensor:
    """Per-image weights that give every class the same total weight (a collection with no class favoured)."""
    counts = torch.bincount(targets.long(), minlength=classes).double().clamp_min(1)
    return (1.0 / counts)[targets.long()] * len(targets) / classes


def fit_class_temperatures(
    logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor | None = None, min_images: int = 50
) -> list[float]:
    """One temperature per predicted class, each fitted on the images predicted as that class (the global
    temperature for a class predicted fewer than ``min_images`` times). Dividing a row's logits by one positive
    number never changes its top label."""
    weights = torch.ones(len(targets)) if weights is None else weights
    overall = fit_temperature(logits, targets, weights)
    pred = logits.argmax(1)
    return [
        fit_temperature(logits[pred == c], targets[pred == c], weights[pred == c])
        if int((pred == c).sum()) >= min_images
        else overall
        for c in range(logits.shape[1])
    ]


def apply_temperature(logits: torch.Tensor, temperature: float | Sequence[float]) -> torch.Tensor:
    """``softmax(logits / T)``, with T the row's predicted class's when ``temperature`` is per class."""
    logits = logits.double()
    if isinstance(temperature, int | float):
        return torch.softmax(logits / temperature, dim=1).float()
    per_row = torch.tensor(list(temperature), dtype=torch.float64)[logits.argmax(1)]
    return torch.softmax(logits / per_row[:, None], dim=1).float()


def choose_temperature(logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor, seed: int = 0) -> dict:
    """One global temperature or one per predicted class, whichever has the lower weighted NLL in two-fold
    cross-validation on these images; then fitted on all of them."""
    fold = torch.rand(len(targets), generator=torch.Generator().manual_seed(seed)) < 0.5
    scores = {"global": 0.0, "per_class": 0.0}
    for train in (fold, ~fold):
        test = ~train
        for kind, fit in (("global", fit_temperature), ("per_class", fit_class_temperatures)):
            t = fit(logits[train], targets[train], weights[train])
            probs = apply_temperature(logits[test], t)
            scores[kind] += nll(probs, targets[test], weights[test]) / 2
    kind = min(scores, key=scores.get)
    fitted = (fit_temperature if kind == "global" else fit_class_temperatures)(logits, targets, weights)
    return {"kind": kind, "temperature": fitted, "cross_validated_nll": scores}


def nll(probs: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor | None = None) -> float:
    """Mean (``weights``-weighted) negative log-likelihood of the true labels."""
    picked = -probs.double()[torch.arange(len(targets)), targets.long()].clamp_min(1e-12).log()
    if weights is None:
        return float(picked.mean())
    return float((picked * weights.double()).sum() / weights.double().sum())


def reliability(probs: torch.Tensor, targets: torch.Tensor, bins: int = 10) -> list[dict]:
    """Per equal-width bin of the top-1 probability: how many answers, their mean probability and accuracy."""
    conf, pred = probs.max(1)
    correct = (pred == targets).double()
    edges = torch.linspace(0, 1, bins + 1).tolist()
    index = (conf.double() * bins).long().clamp(0, bins - 1)
    rows = []
    for b in range(bins):
        members = index == b
        n = int(members.sum())
        rows.append(
            {
                "low": round(edges[b], 4),
                "high": round(edges[b + 1], 4),
                "n": n,
                "confidence": float(conf[members].double().mean()) if n else None,
                "accuracy": float(correct[members].mean()) if n else None,
            }
        )
    return rows


def expected_calibration_error(probs: torch.Tensor, targets: torch.Tensor, bins: int = 15) -> float:
    """ECE: the count-weighted mean |accuracy - mean top-1 probability| over equal-width bins."""
    total = len(targets)
    if total == 0:
        return 0.0
    rows = reliability(probs, targets, bins)
    return sum(r["n"] / total * abs(r["accuracy"] - r["confidence"]) for r in rows if r["n"])


def ece_noise_floor(probs: torch.Tensor, bins: int = 15, draws: int = 400, seed: int = 0) -> dict:
    """The ECE a perfectly calibrated model with these probabilities would show on this many images: labels drawn
    from the probabilities themselves, ``draws`` times. A measured ECE inside this range cannot be told apart
    from perfect calibration on these images."""
    gen = torch.Generator().manual_seed(seed)
    values = torch.tensor(
        [
            expected_calibration_error(probs, torch.multinomial(probs.double(), 1, generator=gen).flatten(), bins)
            for _ in range(draws)
        ]
    )
    return {"mean": float(values.mean()), "q05": float(values.quantile(0.05)), "q95": float(values.quantile(0.95))}


def clopper_pearson_upper(errors: int, n: int, delta: float) -> float:
    """One-sided upper confidence bound at level ``1 - delta`` on an error rate seen as ``errors`` in ``n``."""
    if n == 0 or errors >= n:
        return 1.0
    return float(beta.ppf(1 - delta, errors + 1, n - errors))


def risk_coverage(confidence: torch.Tensor, correct: torch.Tensor, thresholds=REVIEW_GRID) -> list[dict]:
    """For each threshold: the share of answers accepted (probability at or above it) and their error rate."""
    rows = []
    for t in thresholds:
        accepted = confidence >= t
        n = int(accepted.sum())
        errors = int((~correct[accepted]).sum())
        rows.append(
            {
                "review_below": t,
                "accepted": n,
                "accepted_share": n / max(1, len(confidence)),
                "errors": errors,
                "error_rate": errors / n if n else None,
            }
        )
    return rows


REVIEW_ALL = 1.000001  #: ``review_below`` when no threshold qualifies: above every probability, every tag to review


def lowest_within(rows: Sequence[dict], rate: float) -> dict | None:
    """The grid row with the lowest threshold whose bound is at most ``rate``; None when there is none."""
    passing = [r for r in rows if r.get("upper_bound") is not None and r["upper_bound"] <= rate]
    return min(passing, key=lambda r: r["review_below"]) if passing else None


def tightest_row(rows: Sequence[dict]) -> dict:
    """The grid row with the smallest bound (the most accepted among equals): the best promise the grid allows."""
    return min(rows, key=lambda r: (r["upper_bound"], -r.get("accepted", 0)))


def select_review_below(
    confidence: torch.Tensor,
    correct: torch.Tensor,
    max_error: float | Sequence[float] = 0.02,
    delta: float = 0.05,
    grid: tuple[float, ...] = REVIEW_GRID,
) -> dict:
    """The review policy chosen on these answers (``confidence``: calibrated top-1 probabilities, ``correct``:
    booleans): the lowest grid threshold whose Clopper-Pearson bound (level ``delta / len(grid)``) on the
    accepted tags' error rate is at most ``max_error``. A ladder of rates (e.g. 0.02, 0.05, 0.1) keeps the first
    one some threshold meets: the bounds hold for every threshold at once, so which rate is kept may depend on
    these answers. When none qualifies, ``review_below`` is :data:`REVIEW_ALL` (every tag to review); ``tightest``
    names the smallest promise the grid allows either way, so that "none qualified" says how far off it is."""
    rates = [float(max_error)] if isinstance(max_error, int | float) else [float(r) for r in max_error]
    level = delta / len(grid)
    rows = risk_coverage(confidence, correct.bool(), grid)
    for row in rows:
        row["upper_bound"] = clopper_pearson_upper(row["errors"], row["accepted"], level)
    rate = next((r for r in rates if lowest_within(rows, r)), rates[0])
    chosen, tightest = lowest_within(rows, rate), tightest_row(rows)
    return {
        "review_below": chosen["review_below"] if chosen else REVIEW_ALL,
        "max_error": rate,
        **({"max_error_ladder": rates} if len(rates) > 1 else {}),
        "confidence": 1 - delta,
        "method": f"Clopper-Pearson upper bound per threshold at level delta/{len(grid)} (Bonferroni over the grid), "
        "lowest passing threshold (Learn then Test)",
        "n_images": len(confidence),
        "accepted": chosen["accepted"] if chosen else 0,
        "accepted_share": chosen["accepted_share"] if chosen else 0.0,
        "errors": chosen["errors"] if chosen else 0,
        "upper_bound": chosen["upper_bound"] if chosen else None,
        "best_possible_bound": clopper_pearson_upper(0, len(confidence), level),
        "tightest": {k: tightest[k] for k in ("review_below", "accepted", "errors", "upper_bound")},
        "grid": rows,
    }


#: Shares of the answers, most confident first, whose error rate :func:`error_ranking` reports.
COVERAGES = (0.25, 0.5, 0.75)


def ranking_scores(probs: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per answer, scores that rank it among the others (higher: more likely right): the top-1 probability, the
    margin between the top two log-probabilities (the logits' top-two gap over T) and the top centred logit over
    the centred logits' 1- and 2-norm. The centred log-probabilities are the centred logits over T, so under one
    temperature for all classes every score but the first ranks the answers alike whatever T is (the normalised
    ones keep their values too; the margin scales with 1 / T)."""
    logp = probs.double().clamp_min(1e-30).log()
    top2 = logp.topk(2, dim=1).values
    centred = logp - logp.mean(1, keepdim=True)
    scores = {"probability": probs.double().max(1).values, "margin": top2[:, 0] - top2[:, 1]}
    for p in (1, 2):
        norm = centred.norm(p=p, dim=1, keepdim=True).clamp_min(1e-12)
        scores[f"normalised logit (p={p})"] = (centred / norm).max(1).values
    return scores


def error_ranking(score: torch.Tensor, correct: torch.Tensor, coverages: Sequence[float] = COVERAGES) -> dict:
    """The AURC of ``score`` (the mean, over k = 1..n, of the error rate among the k highest-scored answers; ties
    broken by order; lowest when every wrong answer ranks below every right one, about the error rate for a random
    ranking) and the error rate of the top ``coverages`` shares."""
    ordered = (~correct.bool()[score.argsort(descending=True, stable=True)]).double()
    n = len(ordered)
    if n == 0:
        return {"aurc": None, "at_coverage": {}}
    risk = ordered.cumsum(0) / torch.arange(1, n + 1, dtype=torch.float64)
    return {
        "aurc": float(risk.mean()),
        "at_coverage": {f"{c:g}": float(risk[max(1, round(c * n)) - 1]) for c in coverages},
    }


def ranking_report(probs: torch.Tensor, targets: torch.Tensor) -> dict:
    """:func:`error_ranking` of every :func:`ranking_scores` score of ``probs`` against ``targets``."""
    correct = probs.argmax(1) == targets
    return {
        "n_images": len(targets),
        "error_rate": float((~correct).double().mean()) if len(targets) else None,
        "scores": {name: error_ranking(s, correct) for name, s in ranking_scores(probs).items()},
    }


def calibration_report(probs: torch.Tensor, targets: torch.Tensor, temperature: float | Sequence[float]) -> dict:
    """ECE and reliability of ``probs`` as served, and of the same answers before the served ``temperature``
    (undone exactly: dividing log p by 1/T restores the logits up to a per-row constant)."""
    if isinstance(temperature, int | float):
        inverse: float | list[float] = 1.0 / temperature
    else:
        inverse = [1.0 / t for t in temperature]
    before = apply_temperature(probs.double().clamp_min(1e-30).log(), inverse)
    calibrated = temperature != 1.0
    return {
        "calibrated": calibrated,
        "temperature": temperature if isinstance(temperature, int | float) else list(temperature),
        "n_images": len(targets),
        "ece": expected_calibration_error(probs, targets),
        "ece_uncalibrated": expected_calibration_error(before, targets),
        "ece_if_perfectly_calibrated": ece_noise_floor(probs),
        "reliability": reliability(probs, targets),
        "reliability_uncalibrated": reliability(before, targets),
    }
