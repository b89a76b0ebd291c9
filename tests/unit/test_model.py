"""The model class, checkpoints, label maps and the archive recipe."""

from __future__ import annotations

import json
import zipfile

import pytest
import torch
import yaml
from torchvision.models import vgg16_bn

from deploy.archive import (
    BATCHING,
    DEFAULT_MODEL_CONFIG,
    batching_overrides,
    build_archive,
    is_up_to_date,
)
from deploy.archive import get_args_parser as archive_parser
from deploy.archive import main as archive_main
from handlers.card import default_card_path
from handlers.labels import read_label_map, validate_labels, write_label_map
from handlers.model import ArtVGG, build_model, load_checkpoint, save_checkpoint
from handlers.preprocessing import PreprocessConfig
from loadtests.harness import TINY_PREPROCESS, random_checkpoint
from tests.images import ART5_LABELS


def test_vgg16_bn_features_match_torchvision_so_imagenet_weights_load():
    ours = ArtVGG(5, "vgg16_bn")
    reference = {k: v.shape for k, v in vgg16_bn(weights=None).state_dict().items() if k.startswith("features.")}
    mine = {k: v.shape for k, v in ours.state_dict().items() if k.startswith("features.")}
    assert mine == reference, "features.* must have torchvision's names and shapes"
    assert ours.classifier[-1].out_features == 5, f"head has {ours.classifier[-1].out_features} outputs for 5 labels"
    assert len(ours.conv_blocks()) == 5, "VGG16 has five convolution blocks"


def test_tiny_vgg_is_vgg_shaped_and_small():
    model = ArtVGG(3, "tiny_vgg")
    assert sum(p.numel() for p in model.parameters()) < 100_000, "tiny_vgg is not tiny: over 100k parameters"
    assert model(torch.zeros(2, 3, 64, 64)).shape == (2, 3), "tiny_vgg logits have the wrong shape"


def test_bad_construction_arguments():
    with pytest.raises(ValueError, match="unknown arch"):
        ArtVGG(5, "resnet50")
    with pytest.raises(ValueError, match="at least 2 classes"):
        ArtVGG(1, "tiny_vgg")


def test_checkpoint_round_trip_fp16(tmp_path):
    torch.manual_seed(0)
    model = ArtVGG(5, "tiny_vgg").eval()
    path = tmp_path / "m.pt"
    save_checkpoint(path, model, ART5_LABELS, TINY_PREPROCESS, dtype=torch.float16, extra={"training": {"epochs": 1}})
    ckpt = load_checkpoint(path)
    assert ckpt["state_dict"]["classifier.6.weight"].dtype == torch.float16, "weights were not stored in fp16"
    assert ckpt["training"] == {"epochs": 1}, f"the extra training record changed: {ckpt['training']}"
    restored, labels, cfg = build_model(ckpt)
    assert labels == ART5_LABELS and cfg == TINY_PREPROCESS and not restored.training, (
        f"restored labels {labels}, preprocessing {cfg}, training mode {restored.training}"
    )
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        diff = (restored(x).softmax(1) - model(x).softmax(1)).abs().max().item()
    assert diff < 1e-3, f"fp16 weights changed probabilities by {diff}"


def test_load_checkpoint_rejects_foreign_files(tmp_path):
    torch.save({"state_dict": {}}, tmp_path / "foreign.pt")
    with pytest.raises(ValueError, match="not an artserve checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a readable artserve checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")


def test_label_validation():
    validate_labels(["a", "b"], 2)
    for labels, message in [([], "empty"), (["a", "a"], "duplicate"), (["a", ""], "non-empty"), (["a"], "1 labels")]:
        with pytest.raises(ValueError, match=message):
            validate_labels(labels, 2)


def test_label_map_file(tmp_path):
    path = tmp_path / "index_to_name.json"
    write_label_map(path, ART5_LABELS)
    assert json.loads(path.read_text())["4"] == "sculpture", "label 4 is not sculpture in the written map"
    assert read_label_map(path, 5) == ART5_LABELS, "the label map does not read back"
    path.write_text(json.dumps({"0": "a", "2": "b"}))
    with pytest.raises(ValueError, match="keys must be"):
        read_label_map(path)
    path.write_text("{")
    with pytest.raises(ValueError, match="not valid JSON"):
        read_label_map(path)
    with pytest.raises(ValueError, match="missing"):
        read_label_map(tmp_path / "absent.json")


def test_archive_contents(tmp_path):
    ckpt = random_checkpoint(tmp_path / "tiny.pt", "tiny_vgg")
    mar = build_archive(ckpt, tmp_path / "store")
    with zipfile.ZipFile(mar) as z:
        names = set(z.namelist())
        manifest = json.loads(z.read("MAR-INF/MANIFEST.json"))
        labels = json.loads(z.read("index_to_name.json"))
        card = json.loads(z.read("model_card.json"))
        model_config = z.read("model-config.yaml").decode()
    for required in ("tiny.pt", "art_handler.py", "handlers/preprocessing.py", "handlers/model.py"):
        assert required in names, f"{required} missing from the archive: {sorted(names)}"
    assert not any("__pycache__" in n for n in names), "bytecode must not be archived"
    assert manifest["model"]["handler"] == "art_handler.py" and manifest["model"]["modelName"] == "art-category", (
        f"manifest: {manifest['model']}"
    )
    assert labels == {str(i): label for i, label in enumerate(ART5_LABELS)}, (
        f"index_to_name.json in the archive: {labels}"
    )
    assert card["version"] == manifest["model"]["modelVersion"] and len(card["weights_sha256"]) == 64, (
        f"card version {card['version']} vs archive version {manifest['model']['modelVersion']}"
    )
    assert "batchSize" in model_config and "maxBatchDelay" in model_config, (
        f"model-config.yaml in the archive lacks the batching settings:\n{model_config}"
    )
    assert is_up_to_date(mar, [ckpt]), "a fresh archive is newer than its checkpoint"


def test_archive_refuses_a_card_for_other_weights(tmp_path):
    ckpt = random_checkpoint(tmp_path / "tiny.pt", "tiny_vgg")
    default_card_path(ckpt).write_text(json.dumps({"version": "v1", "weights_sha256": "0" * 64}))
    with pytest.raises(ValueError, match="export the card and checkpoint together"):
        build_archive(ckpt, tmp_path / "store")


def test_archive_refuses_broken_checkpoint(tmp_path):
    model = ArtVGG(5, "tiny_vgg")
    path = tmp_path / "bad.pt"
    save_checkpoint(path, model, ART5_LABELS, PreprocessConfig(resize=72, crop=64))
    ckpt = torch.load(path, weights_only=True)
    ckpt["labels"] = ART5_LABELS[:3]
    torch.save(ckpt, path)
    with pytest.raises(ValueError, match="3 labels for a model with 5 outputs"):
        build_archive(path, tmp_path / "store")


def test_archive_batching_overrides_replace_only_the_batching_keys(tmp_path, monkeypatch):
    checked_in = yaml.safe_load(DEFAULT_MODEL_CONFIG.read_text())
    for _, env, _ in BATCHING:
        monkeypatch.delenv(env, raising=False)
    assert batching_overrides() == {}, "with no flag and no variable nothing may change"
    monkeypatch.setenv("ARTSERVE_BATCH_SIZE", "16")
    monkeypatch.setenv("ARTSERVE_WORKERS", "2")
    assert batching_overrides(max_batch_delay=5) == {
        "batchSize": 16,
        "maxBatchDelay": 5,
        "minWorkers": 2,
        "maxWorkers": 2,
    }, batching_overrides(max_batch_delay=5)
    assert batching_overrides(batch_size=32)["batchSize"] == 32, "a flag must win over the environment"
    monkeypatch.setenv("ARTSERVE_BATCH_SIZE", "eight")
    with pytest.raises(ValueError, match="ARTSERVE_BATCH_SIZE"):
        batching_overrides()
    with pytest.raises(ValueError, match="out of range"):
        batching_overrides(batch_size=0)

    ckpt = random_checkpoint(tmp_path / "tiny.pt", "tiny_vgg")
    monkeypatch.setenv("ARTSERVE_BATCH_SIZE", "16")
    archive_main(archive_parser().parse_args(["--checkpoint", str(ckpt), "--export-path", str(tmp_path / "store")]))
    with zipfile.ZipFile(tmp_path / "store" / "art-category.mar") as z:
        packed = yaml.safe_load(z.read("model-config.yaml"))
    expected = checked_in | {"batchSize": 16, "minWorkers": 2, "maxWorkers": 2}
    assert packed == expected, f"the archive's model-config should be the checked-in one with the overrides: {packed}"
    assert yaml.safe_load(DEFAULT_MODEL_CONFIG.read_text()) == checked_in, "the checked-in file must not change"
