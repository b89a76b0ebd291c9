"""Export a training run for serving: a compact checkpoint (fp16 weights) and its model card.

    python -m training.export runs/art5 --output model_store/art-category.pt
    make archive CHECKPOINT=model_store/art-category.pt      # packs the card into the .mar

Writes ``OUTPUT`` (weights in ``--dtype``, arch, labels, preprocessing and the run's ``training``
record) and ``OUTPUT`` with ``.card.json`` (``handlers.card.default_card_path``): name, version
(``<arch>-<date>-<sha12>``), ``weights_sha256`` of the exported file, data source and per-class
counts, metrics and training arguments. Unless ``--no-eval``, the run's validation images are
classified with the fp32 run checkpoint in fp32 and with the exported one as the server computes it
(``--precision``, default auto: bf16 on a CPU with native bf16), and the card records both results,
how many predictions changed and the largest probability difference.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from handlers import MODEL_NAME
from handlers.card import default_card_path, sha256_file
from handlers.classifier import ArtClassifier
from handlers.model import build_model, load_checkpoint, save_checkpoint
from training import DATA_DIR
from training import calibrate as calibration
from training.data import class_counts, content_digests, find_splits, run_splits
from training.evaluate import default_device, default_workers, eval_loader, predict_batches
from training.lineage import provenance
from training.metrics import compute_metrics

DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


def validation_comparison(
    reference: dict, exported: dict, device: torch.device, batch_size: int = 64, precision: str = "auto"
) -> dict:
    """Classify the run's validation split with the fp32 run checkpoint computed in fp32 and with the exported
    checkpoint computed as the server will (``precision``: auto = the serving default on this machine)."""
    record = reference["training"]
    args = record["args"]
    splits = find_splits(record["data"], args["val_fraction"], args["seed"], args["limit_per_class"])
    results, probs = {}, {}
    computed_in = {}
    for name, ckpt, chosen in (("reference", reference, "fp32"), ("exported", exported, precision)):
        classifier = ArtClassifier.load(ckpt, device=device, precision=chosen)
        computed_in[name] = str(classifier.precision)
        start = time.perf_counter()
        loader = eval_loader(splits.val, classifier.preprocess, batch_size, default_workers(device), device)
        p, targets, failures = predict_batches(classifier, loader)
        if failures:
            raise SystemExit(f"{len(failures)} validation images cannot be read, e.g. {splits.val[failures[0][0]][0]}")
        m = compute_metrics(targets, p.argmax(1).tolist(), classifier.labels)
        m["seconds"] = time.perf_counter() - start
        results[name], probs[name] = m, p
    ref, exp = results["reference"], results["exported"]
    return {
        "data": splits.source,
        "n_images": ref["n_images"],
        "reference_dtype": "float32",
        "reference_precision": computed_in["reference"],
        "exported_precision": computed_in["exported"],
        "reference": {k: ref[k] for k in ("accuracy", "macro_f1", "weighted_f1", "per_class")},
        "exported": {k: exp[k] for k in ("accuracy", "macro_f1", "weighted_f1", "per_class")},
        "accuracy_difference": exp["accuracy"] - ref["accuracy"],
        "macro_f1_difference": exp["macro_f1"] - ref["macro_f1"],
        "changed_predictions": int((probs["reference"].argmax(1) != probs["exported"].argmax(1)).sum()),
        "max_probability_difference": float((probs["reference"] - probs["exported"]).abs().max()),
    }


def data_source(data_dir: str) -> dict:
    """Where the images came from: the folder and, when it has one, the first line of its SOURCE.md."""
    source = {"path": data_dir}
    readme = Path(data_dir) / "SOURCE.md"
    if readme.exists():
        source["description"] = readme.read_text(encoding="utf-8").splitlines()[0].lstrip("# ").strip()
    return source


def make_card(
    name: str, ckpt: dict, output: Path, dtype: str, comparison: dict | None, notes: str | None = None
) -> dict:
    training = ckpt["training"]
    sha = sha256_file(output)
    best = training.get("best_dev", {})
    metrics = {
        "dev_during_training": {
            "split": training.get("dev_split"),
            "epoch": training.get("best_epoch"),
            "accuracy": best.get("dev_acc"),
            "macro_f1": best.get("dev_macro_f1"),
            "weighted_f1": best.get("dev_weighted_f1"),
        }
    }
    if training.get("final_val"):
        metrics["validation"] = training["final_val"]
    if comparison:
        metrics["export_check"] = comparison
    card = {
        "name": name,
        "version": f"{ckpt['arch']}-{time.strftime('%Y%m%d', time.gmtime())}-{sha[:12]}",
        "arch": ckpt["arch"],
        "labels": list(ckpt["labels"]),
        "preprocess": ckpt["preprocess"],
        "weights_sha256": sha,
        "weights_dtype": dtype,
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "data": {
            "source": data_source(training["data"]),
            "split": training.get("split"),
            "class_counts": training.get("class_counts"),
            "extra_train": training.get("extra_train", []),
        },
        "metrics": metrics,
        "training": {
            k: training.get(k)
            for k in (
                "epoch",
                "epochs",
                "best_epoch",
                "pretrained",
                "init_from",
                "teacher",
                "precision",
                "train_seconds",
                "torch",
            )
        }
        | {"device": training.get("device")}
        | {"args": training.get("args")},
        "provenance": provenance(training),
    }
    if notes:
        card["notes"] = notes
    return card


def with_training_images(record: dict) -> dict:
    """``record`` with ``train_images_sha256_16`` (what ``--init-from`` checks held-out images against). Records
    of runs older than that list get it derived from their arguments, when the data are here and give exactly the
    recorded class counts; otherwise the record is returned as it is, and the reason printed."""
    if "train_images_sha256_16" in record:
        return record
    args = record.get("args") or {}
    keys = ("data", "val_fraction", "seed", "limit_per_class", "dev_fraction", "extra_train")
    try:
        run = run_splits(argparse.Namespace(**{k: args[k] for k in keys}))
    except (KeyError, ValueError, OSError) as e:
        print(f"note: the record does not list its training images and they cannot be derived ({e!r})")
        return record
    recorded = record.get("class_counts") or {}
    derived = {
        name: class_counts(samples, run.splits.classes) for name, samples in (("train", run.train), ("dev", run.dev))
    }
    if any(recorded.get(name) != counts for name, counts in derived.items()):
        print(
            f"note: the data no longer give the recorded splits ({derived} vs {recorded}): training images not listed"
        )
        return record
    return record | {"train_images_sha256_16": content_digests(run.train)}


def export(
    run_dir: str | Path,
    output: str | Path,
    name: str = MODEL_NAME,
    checkpoint: str = "best.pt",
    dtype: str = "float16",
    evaluate: bool = True,
    device: torch.device | None = None,
    notes: str | None = None,
    precision: str = "auto",
    calibrate_with: argparse.Namespace | None = None,
) -> tuple[Path, dict]:
    """Write the compact checkpoint and its card; returns (checkpoint path, card). ``calibrate_with``:
    ``training.calibrate``'s arguments, to store the temperature and review policy too (None: neither)."""
    source = Path(run_dir) / checkpoint
    ckpt = load_checkpoint(source)
    if "training" not in ckpt:
        raise SystemExit(f"{source} has no training record: export checkpoints written by training.train")
    model, labels, cfg = build_model(ckpt)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    record = with_training_images(ckpt["training"])
    save_checkpoint(output, model, labels, cfg, DTYPES[dtype], extra={"training": record})
    comparison = None
    if evaluate:
        comparison = validation_comparison(
            ckpt, load_checkpoint(output), device or default_device(), precision=precision
        )
    card = make_card(name, ckpt, output, dtype, comparison, notes)
    default_card_path(output).write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    if calibrate_with is not None:  # temperature and review policy on the images the model never trained on
        exported = load_checkpoint(output)
        card = calibration.write(output, output, exported, calibration.calibrate(exported, calibrate_with)) or card
    return output, card


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", help="training run directory (required)")
    p.add_argument(
        "--output", default=f"model_store/{MODEL_NAME}.pt", help="checkpoint to write (default: %(default)s)"
    )
    p.add_argument("--checkpoint", default="best.pt", help="checkpoint inside RUN_DIR to export (default: %(default)s)")
    p.add_argument("--name", default=MODEL_NAME, help="model name in the card (default: %(default)s)")
    p.add_argument(
        "--dtype", default="float16", choices=sorted(DTYPES), help="stored weight type (default: %(default)s)"
    )
    p.add_argument("--no-eval", action="store_true", help="skip the fp32-vs-exported validation check (default: off)")
    p.add_argument(
        "--precision",
        default="auto",
        choices=("auto", "fp32", "bf16", "fp16"),
        help="precision the exported model is checked in, as served (default: auto)",
    )
    p.add_argument("--device", default=None, help="device for the check (default: cuda if available, else cpu)")
    p.add_argument(
        "--no-calibrate",
        action="store_true",
        help="store no temperature and review policy (training.calibrate; default: fit both on the images the "
        "model never trained on, which needs the run's data)",
    )
    p.add_argument(
        "--max-error",
        type=float,
        nargs="+",
        default=[0.02],
        help="review policy: most accepted tags wrong; several rates, strictest first, keep the first one met "
        "(training.calibrate; default: %(default)s)",
    )
    p.add_argument(
        "--confidence", type=float, default=0.95, help="review policy: confidence of that bound (default: %(default)s)"
    )
    p.add_argument(
        "--notes", default=None, help="free text for the card: intended use, limitations, provenance (default: none)"
    )
    return p


def calibration_args(args: argparse.Namespace) -> argparse.Namespace:
    """``training.calibrate``'s arguments for the exported model: the run's data, this command's policy."""
    record = load_checkpoint(Path(args.run_dir) / args.checkpoint).get("training") or {}
    flags = [str(args.output), "--data", str((record.get("args") or {}).get("data", DATA_DIR))]
    flags += ["--max-error", *map(str, args.max_error), "--confidence", str(args.confidence)]
    flags += ["--device", args.device] if args.device else []
    return calibration.get_args_parser().parse_args(flags)


def main(args: argparse.Namespace) -> None:
    device = torch.device(args.device) if args.device else None
    try:
        output, card = export(
            args.run_dir,
            args.output,
            args.name,
            args.checkpoint,
            args.dtype,
            not args.no_eval,
            device,
            args.notes,
            args.precision,
            None if args.no_calibrate else calibration_args(args),
        )
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"error: {e} (--no-eval skips the validation check when the run's data is not here)") from None
    print(f"wrote {output} ({output.stat().st_size / 1e6:.1f} MB, {args.dtype}) and {default_card_path(output)}")
    print(f"version {card['version']}")
    if card.get("calibration"):
        calibration.print_entry(card["calibration"])
    check = card["metrics"].get("export_check")
    if check:
        ref, exp = check["reference"], check["exported"]
        print(
            f"validation ({check['n_images']} images): fp32 accuracy {ref['accuracy']:.4f} macro-F1 "
            f"{ref['macro_f1']:.4f}; {args.dtype} computed in {check['exported_precision']}: accuracy "
            f"{exp['accuracy']:.4f} macro-F1 {exp['macro_f1']:.4f}; "
            f"{check['changed_predictions']} predictions changed, max probability difference "
            f"{check['max_probability_difference']:.2e}"
        )


if __name__ == "__main__":
    main(get_args_parser().parse_args())
