"""Calibrated confidence and the review policy: the statistics (training.confidence), the serving side
(handlers.calibration through ArtClassifier) and the tagging rule (tagging.review_policy)."""

from __future__ import annotations

import json

import pytest
import torch

from handlers.calibration import Calibration
from handlers.classifier import ArtClassifier
from handlers.model import build_model, load_checkpoint
from handlers.preprocessing import normalize, preprocess_bytes
from loadtests.harness import random_checkpoint
from tagging.client import Result
from tagging.records import to_record
from tagging.review_policy import FALLBACK_REVIEW_BELOW, REVIEW_ALL, ReviewRule, resolve_rule, summary
from tests.images import jpeg
from tests.unit.test_distill import data  # noqa: F401  (fixture: tiny data)
from tests.unit.test_training import TINY
from training import calibrate, train
from training.confidence import (
    REVIEW_GRID,
    apply_temperature,
    calibration_report,
    choose_temperature,
    clopper_pearson_upper,
    error_ranking,
    expected_calibration_error,
    fit_class_temperatures,
    fit_temperature,
    ranking_report,
    ranking_scores,
    select_review_below,
)


def synthetic(n: int, temperature: float, seed: int = 0, classes: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits whose labels are drawn from softmax(logits / temperature): that temperature calibrates them."""
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, classes, generator=gen) * 3
    labels = torch.multinomial(torch.softmax(logits / temperature, 1), 1, generator=gen).flatten()
    return logits, labels


@pytest.mark.parametrize("true_t", [0.5, 1.0, 2.5])
def test_temperature_fit_recovers_a_known_temperature(true_t):
    logits, labels = synthetic(8000, true_t)
    fitted = fit_temperature(logits, labels)
    assert abs(fitted - true_t) / true_t < 0.05, f"fitted {fitted:.3f}, labels were drawn at T={true_t}"
    before = expected_calibration_error(torch.softmax(logits, 1), labels)
    after = expected_calibration_error(apply_temperature(logits, fitted), labels)
    assert after < 0.02, f"ECE after the fit is {after:.4f} (before {before:.4f})"


def test_class_temperatures_recover_one_per_predicted_class_and_keep_the_top_label():
    logits, _ = synthetic(12000, 1.0, seed=1, classes=3)
    temps = torch.tensor([0.5, 1.0, 2.0])
    gen = torch.Generator().manual_seed(2)
    labels = torch.multinomial(torch.softmax(logits / temps[logits.argmax(1)][:, None], 1), 1, generator=gen)
    fitted = fit_class_temperatures(logits, labels.flatten())
    for want, got in zip(temps.tolist(), fitted, strict=True):
        assert abs(got - want) / want < 0.1, f"per-class temperatures {fitted}, drawn at {temps.tolist()}"
    assert torch.equal(apply_temperature(logits, fitted).argmax(1), logits.argmax(1)), "calibration moved a top label"
    chosen = choose_temperature(logits, labels.flatten(), torch.ones(len(labels)))
    assert chosen["kind"] == "per_class", f"cross-validation should prefer per-class here: {chosen}"


def test_clopper_pearson_matches_closed_forms():
    assert clopper_pearson_upper(0, 0, 0.05) == 1.0
    # zero errors in n: the bound is 1 - delta ** (1 / n)
    assert abs(clopper_pearson_upper(0, 300, 0.05) - (1 - 0.05 ** (1 / 300))) < 1e-9
    assert clopper_pearson_upper(3, 100, 0.05) > 0.03, "the upper bound must exceed the observed rate"


@pytest.mark.parametrize("max_error", [0.1, (0.03, 0.06, 0.1)], ids=["one rate", "a ladder"])
def test_review_policy_holds_its_bound_over_many_draws(max_error):
    """Draw calibration sets and fresh test sets from one population; the chosen threshold's true error rate
    among accepted tags must exceed the rate it kept in at most delta of the draws (plus sampling slack)."""
    delta, draws = 0.1, 200
    gen = torch.Generator().manual_seed(3)

    def population(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        conf = torch.rand(n, generator=gen) * 0.5 + 0.5  # top-1 probabilities in [0.5, 1)
        wrong_p = (1 - conf) * 0.5  # error among accepted: 12.5 % at 0.5, 10 % at 0.6, 5 % at 0.8
        correct = torch.rand(n, generator=gen) >= wrong_p
        return conf, correct

    big_conf, big_correct = population(200_000)
    violations, chosen_any, kept = 0, 0, set()
    for _ in range(draws):
        conf, correct = population(1000)
        policy = select_review_below(conf, correct, max_error, delta)
        if policy["accepted"] == 0:
            continue
        chosen_any += 1
        accepted = big_conf >= policy["review_below"]
        true_rate = float((~big_correct[accepted]).float().mean())
        violations += true_rate > policy["max_error"]
        kept.add(policy["max_error"])
    assert chosen_any > draws // 2, f"the policy chose a threshold in only {chosen_any} of {draws} draws"
    # a ladder's kept rate depends on the draw: the test must see it move to check the bound of each rung
    assert len(kept) == 1 if isinstance(max_error, float) else len(kept) > 1, f"rates kept: {kept}"
    assert violations / draws <= delta, f"bound violated in {violations} of {draws} draws (delta {delta})"


def test_no_threshold_qualifies_sends_every_tag_to_review():
    conf = torch.full((50,), 0.99)
    correct = torch.tensor([True] * 40 + [False] * 10)
    policy = select_review_below(conf, correct, 0.02, 0.05)
    assert policy["accepted"] == 0 and policy["review_below"] > 1, f"a 20 % error set got a policy: {policy}"
    assert Calibration(1.0, policy["review_below"]).review(0.999999), "every tag must go to review"
    tight = policy["tightest"]  # all 50 accepted at every threshold: 10 wrong, the bound of 10 in 50
    assert (tight["accepted"], tight["errors"]) == (50, 10), tight
    assert tight["upper_bound"] == clopper_pearson_upper(10, 50, 0.05 / len(REVIEW_GRID)) > 0.2


def test_calibration_report_undoes_the_served_temperature():
    logits, labels = synthetic(3000, 2.0, seed=4)
    temps = [2.0, 1.5, 2.5, 1.0, 3.0]
    served = apply_temperature(logits, temps)
    report = calibration_report(served, labels, temps)
    raw = expected_calibration_error(torch.softmax(logits, 1), labels)
    assert abs(report["ece_uncalibrated"] - raw) < 1e-6, f"{report['ece_uncalibrated']} vs the raw softmax's {raw}"
    floor = report["ece_if_perfectly_calibrated"]
    assert 0 < floor["q05"] <= floor["mean"] <= floor["q95"], f"noise floor {floor}"


def calibrated_checkpoint(tmp_path, temperature, review_below):
    path = random_checkpoint(tmp_path / "tiny.pt", "tiny_vgg")
    ckpt = torch.load(path, weights_only=True)
    ckpt["state_dict"]["classifier.6.weight"] *= 1e5  # random logits are ~1e-5: make them O(1)
    policy = {"review_below": review_below, "max_error": 0.05}
    ckpt["calibration"] = {"temperature": temperature, "review_policy": policy}
    torch.save(ckpt, path)
    return path


@pytest.mark.parametrize("temperature", [2.0, [2.0, 3.0, 0.5, 1.5, 4.0]])
def test_serving_applies_the_checkpoints_temperature(tmp_path, temperature):
    path = calibrated_checkpoint(tmp_path, temperature, 0.4)
    classifier = ArtClassifier.load(path, precision="fp32")
    model, _, cfg = build_model(load_checkpoint(path))
    batch = torch.stack([preprocess_bytes(jpeg(seed=s), cfg) for s in range(4)])
    with torch.inference_mode():
        logits = model(normalize(batch, cfg))
    served = classifier.predict(batch)
    per_row = torch.tensor(temperature if isinstance(temperature, list) else [temperature] * 5)[logits.argmax(1)]
    expected = torch.softmax(logits / per_row[:, None], 1)
    assert torch.allclose(served, expected, atol=1e-6), f"served {served} vs softmax(logits / T) {expected}"
    assert not torch.allclose(served, torch.softmax(logits, 1), atol=1e-4), "the temperature changed nothing"
    body = classifier.encode(served[0])
    assert body["review"] == (body["probability"] < 0.4) and body["review_below"] == 0.4, f"answer {body}"
    assert body["review_max_error"] == 0.05, f"the answer must say what the policy promises: {body}"


def test_checkpoint_without_calibration_serves_as_before(tmp_path):
    path = random_checkpoint(tmp_path / "tiny.pt", "tiny_vgg")
    classifier = ArtClassifier.load(path, precision="fp32")
    assert classifier.calibration == Calibration(), f"identity expected, got {classifier.calibration}"
    body = classifier.encode(classifier.predict(preprocess_bytes(jpeg(seed=1), classifier.preprocess)[None])[0])
    assert not {"review", "review_below", "review_max_error"} & set(body), f"no policy, yet the answer says {body}"


def test_calibration_refuses_a_temperature_list_of_the_wrong_length():
    with pytest.raises(ValueError, match="temperatures"):
        Calibration.from_checkpoint({"labels": ["a", "b"], "calibration": {"temperature": [1.0, 2.0, 3.0]}})


def answer(path: str, probability: float, review_below: float | None) -> Result:
    body = {"label": "painting", "probability": probability, "top_k": [], "model_version": "v1"}
    if review_below is not None:
        body |= {"review": probability < review_below, "review_below": review_below}
    return Result(path=path, status=200, body=body, error=None, attempts=1, seconds=0.01)


def test_tagging_flags_by_the_models_policy_unless_told_otherwise(tmp_path):
    records = [to_record(answer(f"/{i}.jpg", p, 0.9), ReviewRule(None, "")) for i, p in enumerate((0.95, 0.85))]
    assert [r["review"] for r in records] == [False, True], f"policy 0.9 flags: {records}"
    card = tmp_path / "card.json"
    card.write_text(json.dumps({"version": "v1", "calibration": {"review_policy": {"max_error": 0.02}}}))
    rule = resolve_rule(None, records, card)
    assert "policy" in rule.source and rule.policy == {"max_error": 0.02}, f"rule {rule}"
    assert summary(records, rule)["accepted"] == 1, summary(records, rule)
    override = resolve_rule(0.8, records, card)
    assert not any(override.needs_review(r) for r in records) and override.source == "--review-below 0.8"
    old = [to_record(answer("/x.jpg", 0.45, None), ReviewRule(None, ""))]
    fallback = resolve_rule(None, old, card)
    assert old[0]["review"] and fallback.threshold(old[0]) == FALLBACK_REVIEW_BELOW, f"fallback: {fallback}"


def test_max_error_takes_the_lowest_threshold_whose_bound_is_within_it(tmp_path):
    """--max-error reads the card's grid: the lowest threshold whose simultaneous bound is at most the asked rate,
    every tag to review when none is, and no grid (an older or another version's card) refused."""
    gen = torch.Generator().manual_seed(5)
    conf = torch.rand(2000, generator=gen) * 0.5 + 0.5
    correct = torch.rand(2000, generator=gen) < conf  # calibrated: a tag at 0.95 is wrong 5 % of the time
    policy = select_review_below(conf, correct, 0.02, 0.05)
    card = tmp_path / "card.json"
    card.write_text(json.dumps({"version": "v1", "calibration": {"review_policy": policy}}))
    records = [
        to_record(answer(f"/{i}.jpg", p, policy["review_below"]), ReviewRule(None, ""))
        for i, p in enumerate((0.999, 0.96, 0.91, 0.55))
    ]
    bounds = {row["review_below"]: row["upper_bound"] for row in policy["grid"]}
    for asked in (0.08, 0.15, 0.3):
        rule = resolve_rule(None, records, card, max_error=asked)
        chosen = rule.threshold(records[0])
        assert bounds[chosen] <= asked and all(b > asked for t, b in bounds.items() if t < chosen), (asked, rule)
        assert rule.policy["max_error"] == asked and f"--max-error {asked:g}" in rule.source
    assert resolve_rule(None, records, card, max_error=0.1).threshold(records[0]) < policy["review_below"]
    strict = resolve_rule(None, records, card, max_error=0.001)
    assert strict.threshold(records[0]) == REVIEW_ALL and all(strict.needs_review(r) for r in records), strict
    assert summary(records, strict)["accepted"] == 0
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"version": "v2", "calibration": {"review_policy": policy}}))
    with pytest.raises(ValueError, match="grid"):
        resolve_rule(None, records, other, max_error=0.05)
    assert resolve_rule(0.8, records, other, max_error=0.05).source == "--review-below 0.8"


def test_calibrate_writes_a_checkpoint_that_serving_can_load(tmp_path, data):  # noqa: F811
    """training.calibrate's output goes through the safe (weights_only) load that serving uses, entry intact."""
    run = train.main(train.parse_args([*TINY, "--data", str(data), "--epochs", "1", "--output", str(tmp_path / "r")]))
    out = tmp_path / "calibrated.pt"
    args = calibrate.get_args_parser().parse_args([str(run / "best.pt"), "--data", str(data), "--output", str(out)])
    entry = calibrate.main(args)
    ckpt = load_checkpoint(out)
    assert json.dumps(ckpt["calibration"]) == json.dumps(entry), "the entry must survive the safe load whole"
    assert type(entry["torch"]) is str, type(entry["torch"])
    assert ArtClassifier.load(out).calibration is not None
    held_out = entry["ranking"]["held_out"]
    assert set(held_out["scores"]) == {"probability", "margin", "normalised logit (p=1)", "normalised logit (p=2)"}
    assert held_out["n_images"] == entry["held_out"]["n_images"]


def test_error_ranking_measures_how_late_the_wrong_answers_come():
    correct = torch.tensor([True, True, True, False])
    best = error_ranking(torch.tensor([4.0, 3.0, 2.0, 1.0]), correct)  # the wrong answer last
    worst = error_ranking(torch.tensor([1.0, 2.0, 3.0, 4.0]), correct)  # the wrong answer first
    assert best["aurc"] == pytest.approx((0 + 0 + 0 + 1 / 4) / 4)
    assert worst["aurc"] == pytest.approx((1 + 1 / 2 + 1 / 3 + 1 / 4) / 4)
    assert best["at_coverage"] == {"0.25": 0.0, "0.5": 0.0, "0.75": 0.0}
    assert worst["at_coverage"] == pytest.approx({"0.25": 1.0, "0.5": 0.5, "0.75": 1 / 3})


def test_ranking_scores_other_than_the_probability_ignore_a_global_temperature():
    logits, labels = synthetic(300, 1.0, seed=3)
    cold, hot = torch.softmax(logits / 0.5, 1), torch.softmax(logits / 2.0, 1)
    a, b = ranking_scores(cold), ranking_scores(hot)
    for name in ("margin", "normalised logit (p=1)", "normalised logit (p=2)"):
        scale = 4.0 if name == "margin" else 1.0  # log-probability gaps scale with 1 / T, normalised ones do not
        assert torch.allclose(a[name], scale * b[name]), name
    report = ranking_report(cold, labels)
    assert report["error_rate"] == pytest.approx(float((cold.argmax(1) != labels).double().mean()))
    # labels drawn from the model's own probabilities: every score ranks the errors better than chance
    assert all(r["aurc"] < report["error_rate"] for r in report["scores"].values())
