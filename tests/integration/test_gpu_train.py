"""The GPU training script's dry run (a small made-up data set, a teacher of random weights, 64 px, one epoch on the
CPU): every step of training/gpu_train.sh runs, so that its first GPU run is not its first run. Checks what comes
back from the device: the records of each step and the exported checkpoint in pieces that the device tool returns."""

from __future__ import annotations

import json
import subprocess
import tarfile

import pytest
import torch
import yaml

from deploy import ROOT
from tests.imagefolder import make_train_val

pytestmark = pytest.mark.integration

CLASSES = ["drawings", "engraving", "iconography", "painting", "sculpture"]  # the default's labels (init-from)
PIECE_LIMIT = 16 * 1024 * 1024  # the device tool brings back files of at most 16 MiB


def test_gpu_train_dry_run(tmp_path):
    data = make_train_val(tmp_path / "data", CLASSES, per_class=10)
    out = tmp_path / "out"
    done = subprocess.run(
        ["bash", str(ROOT / "training" / "gpu_train.sh"), "--dry-run", "--data", str(data), "--out", str(out)]
        + ["--", "--lr", "0.0123"],  # flags for the student's training.train
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, f"gpu_train.sh --dry-run failed ({done.returncode}):\n{done.stdout[-4000:]}"

    with tarfile.open(out / "results.tar.gz") as tar:
        names = set(tar.getnames())
        expected = {
            "gpu-teacher-lite1/report.json", "gpu-timing/timing.yaml", "gpu-student/metrics.csv",
            "gpu-student/final.json", "gpu-student/compare.json", "gpu-student/export/art-category.card.json",
        }  # fmt: skip
        assert expected <= names, f"results.tar.gz lacks {sorted(expected - names)}"
        assert not [n for n in names if n.endswith((".pt", ".pth"))], f"checkpoints belong in pieces: {names}"
        compare = json.load(tar.extractfile("gpu-student/compare.json"))
        card = json.load(tar.extractfile("gpu-student/export/art-category.card.json"))
        timing = tar.extractfile("gpu-timing/timing.yaml").read().decode()
        student_args = yaml.safe_load(tar.extractfile("gpu-student/args.yaml"))
    assert student_args["lr"] == 0.0123, f"the flags after -- did not reach the student: lr {student_args['lr']}"
    assert "image_size: 64" in timing, f"the timing run did not use the student's size:\n{timing}"
    assert compare["split"] == "dev" and compare["images"] > 0 and "interval_95" in compare, compare
    assert card["training"]["init_from"], "the student did not start from the default"

    pieces = sorted(out.glob("art-category.pt.part-*"))
    assert len(pieces) >= 2 and all(p.stat().st_size <= PIECE_LIMIT for p in pieces), [p.stat() for p in pieces]
    (tmp_path / "joined.pt").write_bytes(b"".join(p.read_bytes() for p in pieces))
    joined = torch.load(tmp_path / "joined.pt", map_location="cpu", weights_only=True)
    assert joined["preprocess"]["crop"] == 64 and joined["labels"] == CLASSES, (joined["preprocess"], joined["labels"])
    assert "done" in (out / "log.txt").read_text().splitlines()[-1], "log.txt does not reach the end of the run"
