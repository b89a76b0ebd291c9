"""A model card's provenance: the stages behind a checkpoint, the teachers they distilled, the machine, the time."""

from __future__ import annotations

import torch

from tests.unit.test_distill import data, teacher_ckpt  # noqa: F401  (fixtures: tiny data, a one-epoch teacher)
from tests.unit.test_training import TINY
from training import export, lineage, train


def test_stages_run_oldest_first_and_the_total_adds_every_stage_and_teacher(tmp_path):
    teacher = tmp_path / "teacher.pt"
    record = {"epoch": 4, "source": "imagenet", "args": {"epochs": 4, "views": "crop-flip", "lr": 0.001}}
    record |= {"dev": {"macro_f1": 0.9, "accuracy": 0.92}, "train_seconds": 50.0, "machine": "CPU X"}
    torch.save({"format": "artserve-teacher-1", "variant": "lite0", "training": record}, teacher)
    scratch = {"epoch": 10, "train_seconds": 100.0, "teacher": None, "init_from": None, "machine": "CPU A"}
    middle = {"path": "runs/a/best.pt", "epoch": 5, "train_seconds": 20.0, "teacher": [str(teacher)]}
    middle |= {"init_from": {"path": "runs/scratch/best.pt"} | scratch, "image_size": 112}
    top = {"epoch": 3, "train_seconds": 7.5, "teacher": [str(teacher)], "init_from": middle}
    top |= {"args": {"image_size": 144}, "machine": "CPU B"}
    p = lineage.provenance(top)
    assert [s["checkpoint"] for s in p["stages"]] == ["runs/scratch/best.pt", "runs/a/best.pt", "this run"], p
    assert [s["image_size"] for s in p["stages"]] == [None, 112, 144], p["stages"]
    assert [t["path"] for t in p["teachers"]] == [str(teacher)], "a teacher two stages share is listed once"
    assert p["teachers"][0]["recipe"] == {"epochs": 4, "views": "crop-flip", "lr": 0.001}, p["teachers"][0]
    assert p["teachers"][0]["figures"] == {"dev": {"macro_f1": 0.9, "accuracy": 0.92}}, p["teachers"][0]
    assert p["train_seconds_total"] == 100.0 + 20.0 + 7.5 + 50.0, p["train_seconds_total"]
    teacher.unlink()
    gone = lineage.provenance(top)
    assert gone["train_seconds_total"] is None, "a total that misses a teacher's time must not be stated"
    assert "not readable" in gone["teachers"][0]["note"], gone["teachers"]
    assert gone["train_seconds_known"] == 127.5 and gone["time_unknown"] == [str(teacher)], gone


def test_the_card_of_a_distilled_continuation_names_both_stages_the_teacher_and_the_machine(
    tmp_path,
    data,  # noqa: F811
    teacher_ckpt,  # noqa: F811
):
    common = [*TINY, "--data", str(data), "--epochs", "1"]
    first = train.main(train.parse_args([*common, "--output", str(tmp_path / "first")]))
    second = train.main(
        train.parse_args(
            [*common, "--output", str(tmp_path / "second"), "--init-from", str(first / "best.pt")]
            + ["--teacher", str(teacher_ckpt), "--image-size", "56"]
        )
    )
    _, card = export.export(second, tmp_path / "m.pt", evaluate=False)
    p = card["provenance"]
    assert [s["checkpoint"] for s in p["stages"]] == [str(first / "best.pt"), "this run"], p["stages"]
    assert [s["image_size"] for s in p["stages"]] == [64, 56], p["stages"]
    assert all(s["machine"] and s["train_seconds"] > 0 for s in p["stages"]), p["stages"]
    (summary,) = p["teachers"]
    assert summary["variant"] == "lite0" and set(summary["figures"]) == {"dev", "val"}, summary
    assert summary["train_seconds"] > 0 and summary["machine"], summary
    stages_and_teacher = sum(s["train_seconds"] for s in p["stages"]) + summary["train_seconds"]
    assert p["train_seconds_total"] == stages_and_teacher, p
