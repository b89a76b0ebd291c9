"""Calibrate a checkpoint's confidence and choose its review policy; store both in the checkpoint and its card.

    python -m training.calibrate model_store/art-category.pt            # the shipped default, in place
    python -m training.calibrate runs/X/best.pt --output runs/X/calibrated.pt

The images are DATA/train's that the checkpoint's record shows it never trained on (``train_images_sha256_16``):
for a run's ``best.pt`` its dev split, for an older model also the images added since. A seeded third of them
fits the temperature, one or one per predicted class as cross-validation prefers (``training.confidence``), with
every class weighted equally (no class favoured, as in DATA/val and the held-back set); the other two thirds
choose the review threshold (:func:`training.confidence.select_review_below`), whose bound assumes its images
chose nothing else and holds for images drawn as those were (the source's own mix of classes).
DATA/val, which chooses nothing, then reports the expected calibration error and the reliability table before and
after, and the policy's accepted share and error rate there. The entry goes into the checkpoint under
``calibration`` (read by ``handlers.calibration``) and into the model card, whose ``weights_sha256`` and
``version`` follow the rewritten file. ``training.export`` runs the same for a new model.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from handlers.calibration import Calibration
from handlers.card import default_card_path, sha256_file
from handlers.classifier import ArtClassifier
from handlers.model import load_checkpoint
from training import DATA_DIR
from training.confidence import (
    apply_temperature,
    choose_temperature,
    ece_noise_floor,
    expected_calibration_error,
    nll,
    ranking_report,
    reliability,
    select_review_below,
)
from training.data import Sample, content_digests, find_splits
from training.evaluate import default_device, eval_loader, predict_batches


def unseen_images(data: str | Path, ckpt: dict) -> tuple[list[Sample], list[Sample], str]:
    """(calibration images, val images, description): DATA/train's images absent from the record's training list."""
    record = ckpt.get("training") or {}
    trained = set(record.get("train_images_sha256_16") or ())
    if not trained:
        raise SystemExit(
            "the checkpoint's record does not list its training images, so no image can be shown unseen; "
            "export it with training.export first"
        )
    splits = find_splits(data)
    if list(splits.classes) != list(ckpt["labels"]):
        raise SystemExit(f"{data} has classes {splits.classes}, the checkpoint {list(ckpt['labels'])}")
    digests = content_digests(splits.train, keep_order=True)
    unseen = [s for s, d in zip(splits.train, digests, strict=True) if d not in trained]
    where = f"{len(unseen)} images of {data}/train that the checkpoint never trained on"
    return unseen, splits.val, where


def raw_probabilities(ckpt: dict, samples: list[Sample], args: argparse.Namespace) -> tuple[torch.Tensor, list]:
    """Uncalibrated (T = 1) probabilities of the checkpoint as served (``--precision``), and the targets."""
    device = torch.device(args.device) if args.device else default_device()
    classifier = ArtClassifier.load(ckpt, device=device, precision=args.precision)
    classifier.calibration = Calibration()
    loader = eval_loader(samples, classifier.preprocess, args.batch_size, 0, device)
    probs, targets, failures = predict_batches(classifier, loader)
    if failures:
        raise SystemExit(f"{len(failures)} images could not be read, e.g. {samples[failures[0][0]][0]}")
    return probs, targets


def scaled(probs: torch.Tensor, temperature: float | list[float]) -> torch.Tensor:
    """``softmax(log p / T)``: the same as ``softmax(logits / T)``, since log p differs from the logits by a
    per-row constant."""
    return apply_temperature(probs.double().clamp_min(1e-30).log(), temperature)


def calibration_summary(probs: torch.Tensor, targets: torch.Tensor, temperature: float | list[float]) -> dict:
    """ECE, NLL and reliability table of ``probs`` (T = 1) before and after the temperature."""
    after = scaled(probs, temperature)
    return {
        "n_images": len(targets),
        "ece_before": expected_calibration_error(probs, targets),
        "ece_after": expected_calibration_error(after, targets),
        "nll_before": nll(probs, targets),
        "nll_after": nll(after, targets),
        "ece_if_perfectly_calibrated": ece_noise_floor(after),
        "reliability_before": reliability(probs, targets),
        "reliability_after": reliability(after, targets),
    }


def balanced(mask: torch.Tensor, targets: torch.Tensor, seed: int) -> torch.Tensor:
    """``mask`` thinned to the same number of images of every class (the rarest class's count), seeded."""
    gen = torch.Generator().manual_seed(seed + 1)
    counts = torch.bincount(targets[mask])
    keep = torch.zeros_like(mask)
    for cls in range(len(counts)):
        members = torch.nonzero(mask & (targets == cls)).flatten()
        keep[members[torch.randperm(len(members), generator=gen)[: int(counts.min())]]] = True
    return keep


def policy_outcome(probs: torch.Tensor, targets: torch.Tensor, review_below: float) -> dict:
    """What the policy does on these (calibrated) answers: accepted share, errors among the accepted."""
    conf, pred = probs.max(1)
    accepted = conf >= review_below
    errors = int((pred[accepted] != targets[accepted]).sum())
    n = int(accepted.sum())
    return {
        "n_images": len(targets),
        "accepted": n,
        "accepted_share": n / max(1, len(targets)),
        "accepted_errors": errors,
        "accepted_error_rate": errors / n if n else None,
        "expected_errors_accepted": float((1 - conf[accepted]).sum()),
        "errors_total": int((pred != targets).sum()),
    }


def invocation() -> str:
    """The command that is running: ``training.export`` when it calibrates what it exported, else this one (the
    text of export's ``--notes`` left out: it is in the card)."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    module = spec.name if spec and spec.name.startswith("training.") else "training.calibrate"
    argv = list(sys.argv[1:])
    for i, arg in enumerate(argv[:-1]):
        if arg == "--notes":
            argv[i + 1] = '"..."'
    return f"python -m {module} " + " ".join(argv)


def calibrate(ckpt: dict, args: argparse.Namespace) -> dict:
    """The ``calibration`` entry for ``ckpt``: temperature, review policy, and their figures on DATA/val."""
    unseen, val, where = unseen_images(args.data, ckpt)
    probs, targets = raw_probabilities(ckpt, unseen, args)
    targets = torch.tensor(targets)
    fit = torch.rand(len(targets), generator=torch.Generator().manual_seed(args.seed)) < args.fit_share
    weights = torch.ones(int(fit.sum()))
    chosen = choose_temperature(probs[fit].clamp_min(1e-30).log(), targets[fit], weights, args.seed)
    temperature = chosen["temperature"]
    chooses = ~fit
    if args.balance:  # the threshold's images: equal counts per class, a collection that favours none
        chooses = balanced(chooses, targets, args.seed)
    calibrated = scaled(probs[chooses], temperature)
    conf, pred = calibrated.max(1)
    policy = select_review_below(conf, pred == targets[chooses], args.max_error, 1 - args.confidence)
    val_probs, val_targets = raw_probabilities(ckpt, val, args)
    val_targets = torch.tensor(val_targets)
    val_scaled = scaled(val_probs, temperature)
    entry = {
        "temperature": temperature,
        "temperature_kind": chosen["kind"],
        "temperature_cross_validated_nll": chosen["cross_validated_nll"],
        "review_policy": policy,
        "images": f"{where}: {int(fit.sum())} fit the temperature, {int(chooses.sum())} chose the review threshold"
        + (" (equal counts per class)" if args.balance else ""),
        "fit": calibration_summary(probs[fit], targets[fit], temperature),
        "held_out": calibration_summary(probs[~fit], targets[~fit], temperature),
        "validation": calibration_summary(val_probs, val_targets, temperature)
        | {"policy": policy_outcome(val_scaled, val_targets, policy["review_below"])},
        "ranking": {  # how well each score puts the wrong answers last (training.confidence.error_ranking)
            "held_out": ranking_report(scaled(probs[~fit], temperature), targets[~fit]),
            "validation": ranking_report(val_scaled, val_targets),
        },
        "precision": args.precision,
        "device": str(torch.device(args.device) if args.device else default_device()),
        "torch": torch.__version__,
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": invocation(),
    }
    # plain JSON types only: the checkpoint must load with weights_only (torch.__version__ is a str subclass that
    # the safe unpickler refuses)
    return json.loads(json.dumps(entry))


def write(source: Path, output: Path, ckpt: dict, entry: dict) -> dict | None:
    """Save ``ckpt`` with ``entry`` to ``output``; update (or start) the card beside it. Returns the card."""
    torch.save(dict(ckpt, calibration=entry), output)
    card_path = default_card_path(source)
    card = json.loads(card_path.read_text(encoding="utf-8")) if card_path.exists() else None
    if card is None:
        return None
    sha = sha256_file(output)
    card |= {"weights_sha256": sha, "version": f"{ckpt['arch']}-{time.strftime('%Y%m%d', time.gmtime())}-{sha[:12]}"}
    card["calibration"] = entry
    default_card_path(output).write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    return card


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    a = p.add_argument
    a("checkpoint", help="artserve checkpoint (with a record of its training images) (required)")
    a("--output", default=None, help="checkpoint to write (default: the input, in place)")
    a("--data", default=str(DATA_DIR), help="ImageFolder directory with train/ and val/ (default: %(default)s)")
    a(
        "--max-error",
        type=float,
        nargs="+",
        default=[0.02],
        help="most accepted tags wrong, as a share; several rates, strictest first, keep the first one some "
        "threshold meets (default: %(default)s)",
    )
    a("--confidence", type=float, default=0.95, help="probability that the bound holds (default: %(default)s)")
    a("--fit-share", type=float, default=1 / 3, help="share of the images that fits T (default: one third)")
    a("--seed", type=int, default=0, help="seed of the fit / policy split (default: %(default)s)")
    a(
        "--balance",
        action="store_true",
        help="choose the threshold on equal counts per class (a collection that favours no class) instead of the "
        "source's own mix (default: off)",
    )
    a("--precision", default="auto", help="precision the model is run in, as served (default: %(default)s)")
    a("--batch-size", type=int, default=64, help="images per batch (default: %(default)s)")
    a("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    return p


def policy_rule(review_below: float) -> str:
    """The policy in words: its threshold, or every tag to review when no threshold qualified."""
    return f"review below {review_below:g}" if review_below <= 1 else "review every tag (no threshold qualified)"


def ladder_rates(policy: dict) -> str:
    """The ladder the policy's rate was chosen from ("2%, 5%, 10%"), or "" when it named one rate."""
    rates = policy.get("max_error_ladder") or []
    return ", ".join(f"{r:.0%}" for r in rates) if len(rates) > 1 else ""


def print_entry(entry: dict) -> None:
    pol, val = entry["review_policy"], entry["validation"]
    out = val["policy"]
    t = entry["temperature"]
    shown = f"{t:.3f}" if isinstance(t, float) else "per predicted class " + ", ".join(f"{x:.3f}" for x in t)
    print(f"temperature {shown} ({entry['images']})")
    for name, m in (("held-out calibration images", entry["held_out"]), ("val", val)):
        floor = m["ece_if_perfectly_calibrated"]
        print(
            f"{name} ({m['n_images']}): ECE {m['ece_before']:.4f} -> {m['ece_after']:.4f} (a perfectly calibrated "
            f"model would show {floor['q05']:.3f}-{floor['q95']:.3f}), "
            f"NLL {m['nll_before']:.4f} -> {m['nll_after']:.4f}"
        )
    print(
        f"policy: {policy_rule(pol['review_below'])}: accepted tags wrong at most {pol['max_error']:.1%} with "
        f"{pol['confidence']:.0%} confidence ({pol['accepted']} of {pol['n_images']} accepted, {pol['errors']} wrong, "
        f"bound {pol['upper_bound'] if pol['upper_bound'] is None else round(pol['upper_bound'], 4)}; the tightest "
        f"bound these images allow is {pol['best_possible_bound']:.4f})"
    )
    if ladder_rates(pol):
        print(f"  the rate is the first of {ladder_rates(pol)} that some threshold meets (the bounds hold all at once)")
    if pol["review_below"] > 1:
        tight = pol["tightest"]
        print(
            f"  the smallest error rate any threshold could promise here: {tight['upper_bound']:.1%} "
            f"(review below {tight['review_below']:g}: {tight['accepted']} accepted, {tight['errors']} wrong)"
        )
    print(
        f"val under the policy: {out['accepted']} of {out['n_images']} accepted ({out['accepted_share']:.1%}), "
        f"{out['accepted_errors']} of them wrong; {out['errors_total']} wrong in all"
    )
    for name, report in (("held-out", entry["ranking"]["held_out"]), ("val", entry["ranking"]["validation"])):
        print(
            f"ranking of the errors on {name} ({report['n_images']}; AURC, lower ranks them better; error rate of "
            "the most confident 25 / 50 / 75 %):"
        )
        for score, r in report["scores"].items():
            at = " / ".join(f"{v:.1%}" for v in r["at_coverage"].values())
            print(f"  {score:24s} {'-' if r['aurc'] is None else format(r['aurc'], '.4f')}   {at}")


def main(args: argparse.Namespace) -> dict:
    source = Path(args.checkpoint)
    ckpt = load_checkpoint(source)
    entry = calibrate(ckpt, args)
    output = Path(args.output) if args.output else source
    card = write(source, output, ckpt, entry)
    print_entry(entry)
    print(f"wrote {output}" + (f" and its card (version {card['version']})" if card else " (no card beside it)"))
    return entry


if __name__ == "__main__":
    main(get_args_parser().parse_args(sys.argv[1:]))
