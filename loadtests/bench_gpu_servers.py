"""make bench-gpu's two contenders: artserve's archive served by TorchServe, and TorchServe's stock
``image_classifier`` on the same weights; each one's answers are checked before it is measured."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import requests
import torch

from deploy import tool
from deploy.server import Ports, start_server
from handlers.classifier import ArtClassifier
from handlers.labels import write_label_map
from handlers.model import build_model, load_checkpoint
from loadtests.bench_servers import ServeConfig, write_model_config

STOCK_NAME = "stock-classifier"


def is_stock_answer(body: object) -> bool:
    """The stock image_classifier's answer: a non-empty {label: probability} object."""
    return isinstance(body, dict) and bool(body) and all(isinstance(v, float) for v in body.values())


def stock_archive(checkpoint: Path, config: ServeConfig, folder: Path) -> Path:
    """A .mar for TorchServe's built-in ``image_classifier`` handler: a TorchScript trace of the checkpoint's model
    in fp32 and a torchvision-style ``index_to_name.json`` ({"0": label, ...}), as TorchServe's docs build one."""
    folder.mkdir(parents=True)
    model, labels, preprocess = build_model(load_checkpoint(checkpoint))
    example = torch.zeros(1, 3, preprocess.crop, preprocess.crop)
    with torch.inference_mode():
        torch.jit.trace(model.float().eval(), example).save(str(folder / "model.pt"))
    write_label_map(folder / "index_to_name.json", labels)
    model_config = write_model_config(folder / "model-config.yaml", config)
    command = [str(tool("torch-model-archiver")), "--model-name", STOCK_NAME, "--version", "1.0"]
    command += ["--serialized-file", str(folder / "model.pt"), "--handler", "image_classifier"]
    command += ["--extra-files", str(folder / "index_to_name.json"), "--config-file", str(model_config)]
    command += ["--export-path", str(folder), "--force"]
    subprocess.run(command, check=True, env={**os.environ, "TMPDIR": str(folder)})
    return folder / f"{STOCK_NAME}.mar"


@contextlib.contextmanager
def serving(mar: Path, folder: Path, env: dict[str, str]) -> Iterator[str]:
    """A TorchServe for ``mar`` whose queue holds every client; yields its prediction URL and always stops it."""
    server = start_server(mar, folder, Ports.free(), bind="127.0.0.1", overrides={"job_queue_size": "1024"}, env=env)
    try:
        server.wait_ready(600)
        yield server.predict_url
    finally:
        server.stop()


def post(url: str, image: Path) -> requests.Response:
    return requests.post(url, data=image.read_bytes(), headers={"Content-Type": "image/jpeg"}, timeout=120)


def check_artserve(url: str, images: list[Path], classifier: ArtClassifier) -> dict:
    """artserve's answers agree with the in-process classifier (the served label's probability within 0.05)."""
    problems = []
    for image in images:
        r = post(url, image)
        if r.status_code != 200:
            problems.append(f"{image.name}: HTTP {r.status_code} {r.text[:200]}")
            continue
        body = r.json()
        local = classifier.predict(classifier.decode(image.read_bytes())[None])[0]
        if body.get("label") not in classifier.labels:
            problems.append(f"{image.name}: label {body.get('label')!r} is not one of {classifier.labels}")
        elif abs(body["probability"] - float(local[classifier.labels.index(body["label"])])) > 0.05:
            problems.append(f"{image.name}: served {body['probability']:.3f}, in-process {local.tolist()}")
    return {"ok": not problems, "problems": problems, "checked": len(images)}


def check_stock(url: str, images: list[Path], labels: list[str]) -> dict:
    """The stock handler answers its top-5 {label: probability} over the model's labels, summing to at most 1."""
    problems = []
    for image in images:
        r = post(url, image)
        body = r.json() if r.status_code == 200 else None
        if not isinstance(body, dict) or not body:
            problems.append(f"{image.name}: HTTP {r.status_code} {r.text[:200]}")
        elif not set(body) <= set(labels) or not 0.0 < sum(body.values()) <= 1.0001:
            problems.append(f"{image.name}: {body} is not a top-k map over {labels}")
        elif len(labels) <= 5 and abs(sum(body.values()) - 1.0) > 1e-3:
            problems.append(f"{image.name}: all {len(labels)} classes answered but they sum to {sum(body.values())}")
    return {"ok": not problems, "problems": problems, "checked": len(images)}
