"""Training/serving skew: train -> export (fp16) -> archive -> real TorchServe -> same answers as in-process."""

from __future__ import annotations

import pytest
import requests
import torch

from deploy.archive import build_archive
from handlers.classifier import ArtClassifier
from tagging import evaluate as url_evaluate
from tests.conftest import run_server
from tests.imagefolder import add_unreadable, make_image_folder, make_train_val
from training import evaluate, export, train

pytestmark = pytest.mark.integration

CLASSES = ["icons", "prints", "statues"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny model trained for a few epochs at 64 px, exported with fp16 weights and its card."""
    root = tmp_path_factory.mktemp("skew")
    data = make_train_val(root / "data", CLASSES, per_class=4)
    args = train.parse_args(
        ["--data", str(data), "--output", str(root / "run"), "--arch", "tiny_vgg", "--image-size", "64"]
        + ["--resize", "72", "--epochs", "4", "--batch-size", "4", "--opt", "adamw", "--lr", "0.003"]
        + ["--warmup-epochs", "0", "--workers", "0", "--device", "cpu", "--log-every", "100"]
    )
    run_dir = train.main(args)
    checkpoint, card = export.export(run_dir, root / "store" / "art-category.pt", device=torch.device("cpu"))
    return root, checkpoint, card


@pytest.fixture(scope="module")
def server(exported, tmp_path_factory):
    root, checkpoint, _ = exported
    mar = build_archive(checkpoint, root / "mar")  # picks up the card next to the checkpoint
    yield from run_server(mar, tmp_path_factory.mktemp("skew-ts"))


def test_served_probabilities_match_in_process(exported, server):
    root, checkpoint, card = exported
    classifier = ArtClassifier.load(checkpoint)
    labels = classifier.labels
    for image in sorted((root / "data" / "val").glob("*/*.jpg"))[:3]:
        data = image.read_bytes()
        expected = classifier.predict(classifier.decode(data)[None])[0]
        r = requests.post(server.predict_url, data=data, headers={"Content-Type": "image/jpeg"}, timeout=60)
        assert r.status_code == 200, f"{image.name}: HTTP {r.status_code} {r.text}"
        body = r.json()
        assert body["label"] == labels[int(expected.argmax())], f"{image.name}: served {body}, in-process {expected}"
        for entry in body["top_k"]:
            local = float(expected[labels.index(entry["label"])])
            assert abs(entry["probability"] - local) < 1e-4, f"{image.name} {entry}: in-process probability {local}"
        assert body["model_version"] == card["version"], f"served version {body['model_version']} is not the card's"


def test_url_and_checkpoint_evaluations_agree(exported, server, tmp_path):
    root, checkpoint, _ = exported
    data = make_image_folder(tmp_path / "unseen", CLASSES, per_class=3, seed=500)
    add_unreadable(data / "prints")
    local = evaluate.run(evaluate.get_args_parser().parse_args([str(data), "--checkpoint", str(checkpoint)]))
    remote = url_evaluate.run(
        url_evaluate.get_args_parser().parse_args(
            [str(data), "--url", server.predict_url, "--labels-from", str(checkpoint), "--concurrency", "4"]
        )
    )
    assert remote["confusion"] == local["confusion"], f"served {remote['confusion']} vs in-process {local['confusion']}"
    assert (remote["n_images"], remote["n_failed"]) == (9, 1), (
        f"URL mode: {remote['n_images']} scored, {remote['failed']}"
    )
    assert local["n_failed"] == 1, f"checkpoint mode should count the broken image: {local['failed']}"
    assert "400" in remote["failed"][0]["error"] or "image" in remote["failed"][0]["error"], remote["failed"]
