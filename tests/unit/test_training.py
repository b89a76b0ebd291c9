"""training.train: a tiny VGG overfits a handful of images, resume continues exactly, arguments behave."""

from __future__ import annotations

import argparse
import csv
import json
import urllib.error

import pytest
import torch
import yaml

from deploy import ROOT
from handlers.card import default_card_path, sha256_file
from handlers.model import ARCHS, ArtVGG, load_checkpoint
from tests.imagefolder import make_image_folder, make_train_val
from training import calibrate, evaluate, export, options, resolution, schedule, train, weights
from training.data import find_splits

CLASSES = ["icons", "prints", "statues"]
# Small and fast (and deterministic on CPU): 64 px crops, no augmentation, a fixed learning rate, no early stop.
TINY = [
    "--arch", "tiny_vgg", "--image-size", "64", "--resize", "72", "--augment", "none", "--opt", "adamw",
    "--lr", "0.01", "--weight-decay", "0", "--label-smoothing", "0", "--warmup-epochs", "0", "--sched", "cosine",
    "--patience", "0", "--batch-size", "4", "--workers", "0", "--device", "cpu", "--log-every", "100",
    "--dev-fraction", "0",
]  # fmt: skip


def run_train(tmp_path, data, out, *extra: str):
    return train.main(train.parse_args([*TINY, "--data", str(data), "--output", str(tmp_path / out), *extra]))


def read_rows(run_dir) -> list[dict]:
    with open(run_dir / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def same_data(tmp_path_factory):
    """Four images per class; val holds the same images, so validation accuracy measures memorisation."""
    return make_train_val(tmp_path_factory.mktemp("data"), CLASSES, per_class=4, same=True)


def test_tiny_vgg_overfits_a_handful_of_images(tmp_path, same_data):
    run_dir = run_train(tmp_path, same_data, "run", "--epochs", "12")
    rows = read_rows(run_dir)
    for column in ("train_loss", "dev_loss"):
        losses = [float(r[column]) for r in rows]
        assert losses[-1] < losses[0] - 0.01, f"{column} did not fall: {losses}"
    best = max(float(r["dev_acc"]) for r in rows)
    assert best == 1.0, f"the model never classified all {len(CLASSES) * 4} training images right: {rows}"
    for name in ("args.yaml", "metrics.csv", "best.pt", "last.pt", "curves.png", "final.json"):
        assert (run_dir / name).is_file(), f"run directory lacks {name}: {sorted(p.name for p in run_dir.iterdir())}"
    ckpt = load_checkpoint(run_dir / "best.pt")
    record = ckpt["training"]
    assert ckpt["labels"] == CLASSES, f"labels should be the class folders, got {ckpt['labels']}"
    assert record["class_counts"]["train"] == dict.fromkeys(CLASSES, 4), f"bad class counts {record['class_counts']}"
    assert record["best_dev"]["dev_acc"] == 1.0, f"best.pt is not the best epoch: {record}"
    assert record["final_val"]["accuracy"] == 1.0, f"best.pt's validation figures are missing: {record}"
    assert "also picks the epoch" in record["dev_split"], f"selection on val must be said: {record['dev_split']}"
    assert ckpt["preprocess"]["crop"] == 64 and ckpt["preprocess"]["resize"] == 72, ckpt["preprocess"]
    saved = yaml.safe_load((run_dir / "args.yaml").read_text())
    assert saved["epochs"] == 12 and saved["arch"] == "tiny_vgg", f"args.yaml does not hold the resolved args: {saved}"

    # The standalone evaluation (serving preprocessing) agrees with the training loop's validation.
    args = evaluate.get_args_parser().parse_args(
        [str(same_data / "val"), "--checkpoint", str(run_dir / "best.pt"), "--json", str(tmp_path / "e.json")]
    )
    metrics = evaluate.run(args)
    assert metrics["accuracy"] == 1.0, f"evaluate.py disagrees with training validation: {metrics}"
    assert (tmp_path / "e.confusion.png").is_file(), "no confusion-matrix PNG next to the JSON"

    # Export: fp16 weights, card with sha256 of the exported file, and the fp32-vs-fp16 check.
    out, card = export.export(run_dir, tmp_path / "store" / "m.pt", device=torch.device("cpu"), notes="a test model")
    assert default_card_path(out).is_file(), "export wrote no model card next to the checkpoint"
    assert json.loads(default_card_path(out).read_text())["notes"] == "a test model", "card lost --notes"
    assert card["weights_sha256"] == sha256_file(out), "card sha256 is not the exported file's"
    assert card["version"].startswith("tiny_vgg-") and card["version"].endswith(card["weights_sha256"][:12]), card
    exported = load_checkpoint(out)
    assert exported["state_dict"]["classifier.6.weight"].dtype == torch.float16, "export did not store fp16 weights"
    assert "training" in exported, "exported checkpoint lost its training record (deploy.serve refuses it)"
    check = card["metrics"]["export_check"]
    assert check["changed_predictions"] == 0 and check["max_probability_difference"] < 1e-2, check


def test_resume_continues_where_it_stopped(tmp_path, same_data):
    # A constant LR: the cosine schedule depends on --epochs, which this test changes on resume.
    straight = run_train(tmp_path, same_data, "straight", "--epochs", "3", "--sched", "constant")
    resumed = run_train(tmp_path, same_data, "resumed", "--epochs", "2", "--sched", "constant")
    assert load_checkpoint(resumed / "last.pt")["resume"]["epoch"] == 2, "last.pt does not record epoch 2"
    run_train(tmp_path, same_data, "resumed", "--epochs", "3", "--sched", "constant", "--resume")
    epochs = [int(r["epoch"]) for r in read_rows(resumed)]
    assert epochs == [1, 2, 3], f"resumed run should add epoch 3 only, metrics.csv has epochs {epochs}"
    a = load_checkpoint(straight / "last.pt")["state_dict"]
    b = load_checkpoint(resumed / "last.pt")["state_dict"]
    for key in a:
        assert torch.allclose(a[key].float(), b[key].float(), atol=1e-6), f"{key} differs after resume"


def test_existing_run_needs_resume(tmp_path, same_data):
    run_train(tmp_path, same_data, "run", "--epochs", "1")
    with pytest.raises(SystemExit, match="--resume"):
        run_train(tmp_path, same_data, "run", "--epochs", "1")


def test_yaml_config_sets_defaults_and_flags_override(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("epochs: 7\nlr: 0.5\nbatch-size: 3\n")
    args = train.parse_args(["--config", str(config), "--lr", "0.1"])
    assert (args.epochs, args.lr, args.batch_size) == (7, 0.1, 3), f"YAML/flag precedence wrong: {args}"
    config.write_text("epochz: 7\n")
    with pytest.raises(SystemExit, match="epochz"):
        train.parse_args(["--config", str(config)])


@pytest.mark.parametrize("module", [train, evaluate, export, calibrate, resolution])
def test_every_flag_states_its_default(module):
    parser: argparse.ArgumentParser = module.get_args_parser()
    silent = [
        a.option_strings or a.dest
        for a in parser._actions
        if not isinstance(a, argparse._HelpAction)
        and "default" not in (a.help or "")
        and "required" not in (a.help or "")
    ]
    assert not silent, f"{module.__name__}: help of {silent} does not state the default"


def test_pretrained_path_loads_convolutions_only(tmp_path):
    torch.manual_seed(1)
    donor = ArtVGG(7, "tiny_vgg")
    torch.save(donor.state_dict(), tmp_path / "donor.pt")
    model = ArtVGG(3, "tiny_vgg")
    head = model.classifier[6].weight.clone()
    described = weights.load_pretrained(model, str(tmp_path / "donor.pt"))
    assert "feature tensors" in described, described
    assert torch.equal(model.features[0].weight, donor.features[0].weight), "conv weights were not copied"
    assert torch.equal(model.classifier[6].weight, head), "the head must keep its own initialisation"

    with pytest.raises(SystemExit, match="does not fit"):
        weights.load_pretrained(ArtVGG(3, "vgg16"), str(tmp_path / "donor.pt"))


def test_imagenet_unavailable_names_the_alternatives(monkeypatch):
    import torchvision

    class Offline:
        def get_state_dict(self, progress=True):
            raise urllib.error.URLError("no network")

    monkeypatch.setattr(torchvision.models, "get_weight", lambda name: Offline())
    with pytest.raises(SystemExit) as info:
        weights.load_pretrained(ArtVGG(3, "vgg16_bn"), "imagenet")
    message = str(info.value)
    assert "--pretrained PATH" in message and "--pretrained none" in message, message
    with pytest.raises(SystemExit, match="--pretrained none"):
        weights.load_pretrained(ArtVGG(3, "tiny_vgg"), "imagenet")


def test_freeze_blocks_stops_gradients_in_the_first_blocks():
    model = ArtVGG(3, "tiny_vgg")
    frozen = weights.freeze_blocks(model, 2)
    blocks = model.conv_blocks()
    assert len(frozen) == 2, frozen
    assert not any(p.requires_grad for b in blocks[:2] for p in b.parameters()), "first 2 blocks still train"
    assert all(p.requires_grad for b in blocks[2:] for p in b.parameters()), "later blocks were frozen too"
    with pytest.raises(SystemExit, match="convolution blocks"):
        weights.freeze_blocks(ArtVGG(3, "tiny_vgg"), len(blocks) + 1)


def test_stratified_split_without_val_folder(tmp_path):
    make_image_folder(tmp_path, CLASSES, per_class=10)
    a = find_splits(tmp_path, val_fraction=0.3, seed=5)
    b = find_splits(tmp_path, val_fraction=0.3, seed=5)
    assert (a.train, a.val) == (b.train, b.val), "the split must be the same for the same seed"
    assert not set(a.train) & set(a.val), "train and val overlap"
    val_counts = [sum(t == c for _, t in a.val) for c in range(len(CLASSES))]
    assert val_counts == [3, 3, 3], f"split is not stratified: {val_counts} val images per class"


def test_learning_rate_warms_up_then_decays_to_min():
    args = train.parse_args(["--lr", "0.1", "--min-lr", "0.001", "--epochs", "10", "--warmup-epochs", "1"])
    lrs = [schedule.lr_at(args, step, steps_per_epoch=10) for step in range(100)]
    assert lrs[0] == pytest.approx(0.01) and lrs[9] == pytest.approx(0.1), f"warm-up wrong: {lrs[:10]}"
    assert all(x >= y for x, y in zip(lrs[10:], lrs[11:], strict=False)), "cosine schedule is not decreasing"
    assert lrs[-1] == pytest.approx(0.001, abs=1e-3), f"schedule should end near --min-lr, ends at {lrs[-1]}"


def test_curator_csv_images_join_the_training_split_only(tmp_path):
    data = make_train_val(tmp_path / "data", CLASSES, per_class=4)
    make_image_folder(tmp_path / "curated", CLASSES, per_class=1, seed=700)
    val_image = sorted((data / "val" / "prints").glob("*.jpg"))[0]
    train_image = sorted((data / "train" / "icons").glob("*.jpg"))[0]
    corrections = tmp_path / "corrections.csv"
    corrections.write_text(
        "path,label,decision\n"
        "curated/icons/700.jpg,statues,corrected\n"  # relative to the CSV's folder; the curator's label wins
        f"{val_image},prints,accepted\n"  # a validation image: never trained on
        f"{train_image},icons,accepted\n"  # already in the training split
    )
    run = run_train(tmp_path, data, "run", "--epochs", "1", "--extra-train", str(corrections))
    record = load_checkpoint(run / "best.pt")["training"]
    assert record["extra_train"] == [
        {
            "file": str(corrections),
            "rows": 3,
            "added": 1,
            "already_in_train": 1,
            "dropped_in_dev_or_val": 1,
            "not_curator": 0,
        }
    ], f"the record should say what the CSV added: {record['extra_train']}"
    assert record["class_counts"]["train"] == {"icons": 4, "prints": 4, "statues": 5}, record["class_counts"]
    assert yaml.safe_load((run / "args.yaml").read_text())["extra_train"] == [str(corrections)], "args.yaml lacks it"

    corrections.write_text("path,label\ncurated/icons/700.jpg,frescoes\n")
    with pytest.raises(SystemExit, match="frescoes"):
        run_train(tmp_path, data, "run2", "--epochs", "1", "--extra-train", str(corrections))


@pytest.fixture(scope="module")
def distinct_data(tmp_path_factory):
    """Four training images per class and two other validation images per class."""
    return make_train_val(tmp_path_factory.mktemp("distinct"), CLASSES, per_class=4)


def test_init_from_starts_from_the_whole_model_and_records_it(tmp_path, distinct_data, same_data):
    first = run_train(tmp_path, distinct_data, "first", "--epochs", "2") / "best.pt"
    ckpt = load_checkpoint(first)
    record = ckpt["training"]
    train_files = sorted((distinct_data / "train").rglob("*.jpg"))
    assert len(record["train_images_sha256_16"]) == len(train_files), "the record must list every training image"

    model = ArtVGG(len(CLASSES), "tiny_vgg")
    info = weights.load_init(model, str(first), CLASSES, set(), {})
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, ckpt["state_dict"][name].to(tensor.dtype)), f"{name} was not loaded"
    assert info["sha256"] == sha256_file(first) and info["epoch"] == record["epoch"], info

    second = run_train(tmp_path, distinct_data, "second", "--epochs", "1", "--init-from", str(first))
    record = load_checkpoint(second / "last.pt")["training"]
    assert record["init_from"]["sha256"] == sha256_file(first), f"the record lacks the starting point: {record}"
    assert record["pretrained"].startswith(f"init-from {first}"), record["pretrained"]
    card = export.make_card("art-category", load_checkpoint(second / "last.pt"), second / "last.pt", "float32", None)
    assert card["training"]["init_from"]["path"] == str(first), f"the model card lacks the starting point: {card}"

    # same_data's validation images are byte copies of distinct_data's training images: the first model saw them
    with pytest.raises(SystemExit, match="trained on 12 of this run's dev or validation images"):
        run_train(tmp_path, same_data, "leaky", "--epochs", "1", "--init-from", str(first))


def test_init_from_refuses_what_does_not_fit(tmp_path, distinct_data):
    first = run_train(tmp_path, distinct_data, "first", "--epochs", "1") / "best.pt"
    ckpt = load_checkpoint(first)
    record = ckpt["training"]
    dev = {"split": record["dev_split"], "counts": record["class_counts"]["dev"]}
    with pytest.raises(SystemExit, match="labels"):
        weights.load_init(ArtVGG(3, "tiny_vgg"), str(first), ["a", "b", "c"], set(), dev)
    with pytest.raises(SystemExit, match="trained on 1 of"):
        weights.load_init(ArtVGG(3, "tiny_vgg"), str(first), CLASSES, {record["train_images_sha256_16"][0]}, dev)
    # a record from before the image digests: only the same dev split (description and class counts) passes
    digests = record.pop("train_images_sha256_16")
    torch.save(ckpt, tmp_path / "legacy.pt")
    # ... and export derives the list for it while the data still give the recorded splits
    (tmp_path / "legacy-run").mkdir()
    torch.save(ckpt, tmp_path / "legacy-run" / "best.pt")
    out, _ = export.export(tmp_path / "legacy-run", tmp_path / "exported.pt", evaluate=False)
    assert load_checkpoint(out)["training"].get("train_images_sha256_16") == digests, "export did not derive the list"
    record["class_counts"]["train"] = dict.fromkeys(CLASSES, 9)
    torch.save(ckpt, tmp_path / "legacy-run" / "best.pt")
    out, _ = export.export(tmp_path / "legacy-run", tmp_path / "exported.pt", evaluate=False)
    assert "train_images_sha256_16" not in load_checkpoint(out)["training"], "a list for other data was made up"
    weights.load_init(ArtVGG(3, "tiny_vgg"), str(tmp_path / "legacy.pt"), CLASSES, set(), dev)
    with pytest.raises(SystemExit, match="held out other dev images"):
        weights.load_init(ArtVGG(3, "tiny_vgg"), str(tmp_path / "legacy.pt"), CLASSES, set(), dev | {"split": "x"})
    with pytest.raises(SystemExit, match="not an artserve checkpoint"):
        torch.save({"state_dict": {}}, tmp_path / "other.pt")
        weights.load_init(ArtVGG(3, "tiny_vgg"), str(tmp_path / "other.pt"), CLASSES, set(), dev)
    with pytest.raises(SystemExit, match="cannot be combined"):
        run_train(tmp_path, distinct_data, "both", "--init-from", str(first), "--pretrained", str(first))


@pytest.mark.parametrize("config", sorted((ROOT / "training" / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_committed_recipe_parses(config):
    """Each config names only training.train's flags (a misspelt key would stop its run at the start)."""
    args = options.parse_args(["--config", str(config)])
    assert args.arch in ARCHS and args.image_size > 0 and args.epochs > 0, vars(args)
