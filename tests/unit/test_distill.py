"""Fast CPU training: the teacher, distillation on the same views, the time budget, precision selection."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from handlers import precision
from handlers.model import ArtVGG, load_checkpoint
from tests.imagefolder import make_train_val
from tests.unit.test_training import TINY, read_rows
from training import distill, teacher, teacher_model, train
from training.cache import ImageCache

CLASSES = ["icons", "prints", "statues"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_train_val(tmp_path_factory.mktemp("data"), CLASSES, per_class=4)


@pytest.fixture(scope="module")
def teacher_ckpt(tmp_path_factory, data):
    """A teacher fine-tuned for one epoch from a state dict the test writes (no package weights needed)."""
    root = tmp_path_factory.mktemp("teacher")
    torch.manual_seed(0)
    imagenet_like = teacher_model.Teacher("lite0", [str(i) for i in range(1000)])
    torch.save(imagenet_like.net.state_dict(), root / "imagenet.pth")
    args = teacher.get_args_parser().parse_args(
        ["--data", str(data), "--output", str(root / "run"), "--weights", str(root / "imagenet.pth")]
        + ["--epochs", "1", "--batch-size", "4", "--dev-fraction", "0.25", "--device", "cpu"]
    )
    report = teacher.main(args)
    assert set(report) == {"dev", "val"}, f"the teacher report needs dev and val tables: {report.keys()}"
    assert set(report["val"]["per_class"]) <= set(CLASSES), report["val"]["per_class"]
    saved = json.loads((root / "run" / "report.json").read_text())
    assert saved["val"]["n_images"] == 6, f"val of 2 images x 3 classes expected: {saved['val']['n_images']}"
    return root / "run" / "teacher.pt"


def test_teacher_refuses_a_state_dict_of_another_shape(tmp_path):
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(SystemExit, match="does not fit"):
        teacher_model.Teacher("lite0", CLASSES).load_imagenet(tmp_path / "bad.pth")


def test_teacher_labels_must_match_the_run(teacher_ckpt):
    loaded = teacher_model.load_teacher(teacher_ckpt, CLASSES)
    assert not any(p.requires_grad for p in loaded.parameters()), "a loaded teacher must be frozen"
    with pytest.raises(SystemExit, match="labels"):
        teacher_model.load_teacher(teacher_ckpt, ["a", "b", "c"])


def test_student_sees_the_teachers_crop_scaled_down(tmp_path, data, teacher_ckpt):
    args = train.parse_args(
        [*TINY, "--data", str(data), "--output", str(tmp_path / "r"), "--teacher", str(teacher_ckpt)]
    )
    args.workers = 0
    trainer = train.Trainer(args)
    order = torch.arange(len(trainer.train))
    student, teacher_view, _ = trainer.batch(1, 0, order)
    assert teacher_view.shape[-1] == 224, f"the teacher should see its own 224 px view, got {teacher_view.shape}"
    assert student.shape[-1] == 64, f"the student should see --image-size 64, got {student.shape}"
    scaled = F.interpolate(teacher_view.float(), size=(64, 64), mode="bilinear", antialias=True)
    assert torch.allclose(student.float(), scaled), "the student's view is not the teacher's view scaled down"
    again, _, _ = trainer.batch(1, 0, order)
    assert torch.equal(again, student), "the same (epoch, step) must give the same views"
    other, _, _ = trainer.batch(1, 1, order)
    assert not torch.equal(other[:1], student[:1]), "another step must draw other views"


def test_a_teacher_trained_at_the_students_size_sees_exactly_the_students_view(tmp_path, data):
    torch.manual_seed(0)
    torch.save(teacher_model.Teacher("lite0", [str(i) for i in range(1000)]).net.state_dict(), tmp_path / "in.pth")
    args = teacher.get_args_parser().parse_args(
        ["--data", str(data), "--output", str(tmp_path / "t"), "--weights", str(tmp_path / "in.pth")]
        + ["--image-size", "64", "--epochs", "1", "--batch-size", "4", "--dev-fraction", "0.25", "--device", "cpu"]
    )
    teacher.main(args)
    loaded = teacher_model.load_teacher(tmp_path / "t" / "teacher.pt", CLASSES)
    assert loaded.image_size == 64, f"the teacher must keep the size it was trained at, got {loaded.image_size}"
    older = {k: v for k, v in torch.load(tmp_path / "t" / "teacher.pt", weights_only=True).items() if k != "image_size"}
    torch.save(older, tmp_path / "older.pt")
    assert teacher_model.load_teacher(tmp_path / "older.pt").image_size == 224, "a file without a size: the native"
    run = train.parse_args(
        [*TINY, "--data", str(data), "--output", str(tmp_path / "r")]
        + ["--teacher", str(tmp_path / "t" / "teacher.pt")]
    )
    student, teacher_view, _ = train.Trainer(run).batch(1, 0, torch.arange(8))
    assert teacher_view.shape[-1] == 64 and torch.equal(student, teacher_view), (
        "a teacher at the student's size must see the student's own view"
    )


def test_an_ensemble_of_teachers_averages_log_probabilities_each_at_its_resolution(tmp_path, data, teacher_ckpt):
    small = teacher_model.load_teacher(teacher_ckpt, CLASSES)
    large = teacher_model.Teacher("lite1", CLASSES)  # 240 px
    torch.save(
        {
            **torch.load(teacher_ckpt, weights_only=True),
            "variant": "lite1",
            "image_size": 240,
            "state_dict": large.net.state_dict(),
        },
        tmp_path / "lite1.pt",
    )
    both = teacher_model.load_teachers([teacher_ckpt, tmp_path / "lite1.pt"], CLASSES)
    assert isinstance(both, teacher_model.TeacherEnsemble) and both.image_size == 240 and both.variant == "lite0+lite1"
    assert not any(p.requires_grad for p in both.parameters()), "an ensemble of teachers must be frozen"
    seen = []
    for member in both.members:
        member.register_forward_pre_hook(lambda m, inputs: seen.append(inputs[0].shape[-1]))
    x = (torch.rand(2, 3, 240, 240) * 255).to(torch.uint8)
    with torch.no_grad():
        out = both(x)
        small_view = F.interpolate(x.float(), size=(224, 224), mode="bilinear", antialias=True)
        expected = (F.log_softmax(small(small_view), 1) + F.log_softmax(both.members[1](x), 1)) / 2
    assert seen[:2] == [224, 240], f"each member must see the view at its own resolution: {seen}"
    torch.testing.assert_close(out, expected)
    assert isinstance(teacher_model.load_teachers(str(teacher_ckpt)), teacher_model.Teacher), (
        "one path (a YAML string) = one"
    )
    args = train.parse_args([*TINY, "--teacher", str(teacher_ckpt), str(tmp_path / "lite1.pt")])
    assert args.teacher == [str(teacher_ckpt), str(tmp_path / "lite1.pt")], args.teacher
    (tmp_path / "run.yaml").write_text(f"teacher: {teacher_ckpt}\n")
    args = train.parse_args([*TINY, "--config", str(tmp_path / "run.yaml")])
    assert args.teacher == [str(teacher_ckpt)], f"a YAML path without a list is one teacher: {args.teacher}"


def opinionated_teacher(data) -> teacher_model.Teacher:
    """A random teacher with confident, image-dependent answers: BatchNorm statistics calibrated on the data
    (random EfficientNet weights alone give near-zero activations) and a large random head."""
    torch.manual_seed(3)
    t = teacher_model.Teacher("lite0", CLASSES)
    for m in t.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the calibration batches
    images = [ImageCache([(str(p), 0)]).images[0] for p in sorted((data / "train").glob("*/*.jpg"))]
    batch = torch.stack([F.interpolate(i[None].float(), size=(224, 224))[0] for i in images])
    t.train()
    with torch.no_grad():
        t(batch)
    torch.nn.init.normal_(t.net._fc.weight, std=2.0)
    return t.eval()


def test_distillation_loss_falls_and_is_zero_for_identical_logits(tmp_path, data):
    logits = torch.randn(4, 3)
    assert distill.soft_target_loss(logits, logits, 2.0).abs() < 1e-6, "KL of identical outputs must be 0"
    hard = torch.tensor(1.0)
    assert distill.distillation_loss(logits, logits, hard, 0.25, 2.0) == pytest.approx(0.75), "blend weights wrong"
    opinionated = opinionated_teacher(data)
    teacher_ckpt = tmp_path / "teacher.pt"
    teacher_model.save_teacher(teacher_ckpt, opinionated, {})
    run = train.main(
        train.parse_args(
            [*TINY, "--data", str(data), "--output", str(tmp_path / "kd"), "--epochs", "6", "--teacher"]
            + [str(teacher_ckpt), "--kd-weight", "1.0", "--kd-temperature", "2"]
        )
    )
    losses = [float(r["train_loss"]) for r in read_rows(run)]
    assert losses[0] > 0.05, f"the test teacher should disagree with an untrained student: {losses}"
    assert losses[-1] < 0.95 * losses[0], f"the soft-target loss did not fall: {losses}"
    assert load_checkpoint(run / "best.pt")["training"]["teacher"] == [str(teacher_ckpt)], "record lacks the teacher"


def test_time_budget_and_resume_continue_the_same_schedule(tmp_path, data):
    common = [*TINY, "--data", str(data), "--epochs", "2", "--augment", "art", "--mixup", "0.4"]
    straight = train.main(train.parse_args([*common, "--output", str(tmp_path / "straight")]))
    pieces = tmp_path / "pieces"
    train.main(train.parse_args([*common, "--output", str(pieces), "--time-budget", "1e-6"]))
    state = load_checkpoint(pieces / "last.pt")["resume"]
    assert (state["epoch"], state["step"]) == (0, 1), f"a spent budget should stop after one step: {state}"
    for _ in range(10):
        train.main(train.parse_args([*common, "--output", str(pieces), "--time-budget", "1e-6", "--resume"]))
        state = load_checkpoint(pieces / "last.pt")["resume"]
        if state["epoch"] == 2:
            break
    assert state["epoch"] == 2, f"the run did not finish in 10 resumed pieces: {state}"
    assert [int(r["epoch"]) for r in read_rows(pieces)] == [1, 2], "metrics.csv should hold each epoch once"
    a = load_checkpoint(straight / "last.pt")["state_dict"]
    b = load_checkpoint(pieces / "last.pt")["state_dict"]
    for key in a:
        assert torch.allclose(a[key].float(), b[key].float(), atol=1e-6), f"{key} differs after budget + resume"


def test_bf16_is_chosen_only_where_the_cpu_has_it(monkeypatch):
    assert precision.cpu_has_native_bf16(frozenset({"avx512f", "avx512_bf16"}))
    assert precision.cpu_has_native_bf16(frozenset({"amx_bf16", "amx_tile"}))
    assert not precision.cpu_has_native_bf16(frozenset({"avx2", "avx512f", "avx512bw"}))
    args = train.parse_args(["--device", "cpu"])
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda flags=None: False)
    assert train.resolve_precision(args)[1:] == (None, False), "no native bf16: fp32, contiguous"
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda flags=None: True)
    assert train.resolve_precision(args)[1:] == (torch.bfloat16, True), "native bf16: bf16 autocast + channels_last"
    args.amp = "off"
    assert train.resolve_precision(args)[1:] == (None, False), "--amp off must win"


def test_evaluate_scores_each_teacher_and_their_average(tmp_path, data, teacher_ckpt):
    args = teacher.get_args_parser().parse_args(
        ["--data", str(data), "--dev-fraction", "0.25", "--device", "cpu", "--output", str(tmp_path / "cmp")]
        + ["--evaluate", str(teacher_ckpt), str(teacher_ckpt)]
    )
    report = teacher.main(args)
    average = f"average of {teacher_ckpt} + {teacher_ckpt}"
    assert set(report) == {str(teacher_ckpt), average}, report.keys()
    alone, both = report[str(teacher_ckpt)], report[average]
    assert alone["val"]["n_images"] == 6 and set(alone) == {"dev", "val"}, alone
    assert both["val"]["accuracy"] == alone["val"]["accuracy"], "a teacher averaged with itself answers alike"
    assert json.loads((tmp_path / "cmp" / "evaluate.json").read_text()) == json.loads(json.dumps(report))
    assert not (tmp_path / "cmp" / "teacher.pt").exists(), "--evaluate must not train"


def test_resolution_at_the_teachers_own_size_equals_its_evaluation(tmp_path, data, teacher_ckpt):
    """training.resolution: at the teacher's own size the views are the evaluation's, so the scores agree; at a
    small size the views lose detail (they differ), and every size gets a row."""
    from training import resolution

    args = resolution.get_args_parser().parse_args(
        [str(teacher_ckpt), "--data", str(data), "--dev-fraction", "0.25", "--output", str(tmp_path / "r.json")]
        + ["--sizes", "32", "224"]
    )
    report = resolution.main(args)
    assert set(report) == {32, 224}, report.keys()
    evaluated = teacher.main(
        teacher.get_args_parser().parse_args(
            ["--data", str(data), "--dev-fraction", "0.25", "--device", "cpu", "--output", str(tmp_path / "e")]
            + ["--evaluate", str(teacher_ckpt)]
        )
    )[str(teacher_ckpt)]["dev"]
    assert report[224]["macro_f1"] == evaluated["macro_f1"], f"{report[224]} vs the teacher's own {evaluated}"
    assert json.loads((tmp_path / "r.json").read_text())["dev_images"] == evaluated["n_images"]


@pytest.mark.parametrize("features", [[], ["--kd-features", "0.5"]], ids=["logits", "logits+features"])
def test_resume_with_a_teacher_and_balanced_classes_equals_an_uninterrupted_run(tmp_path, data, teacher_ckpt, features):
    """The grown data's recipe (teacher on the same views, class-balanced loss, mixup; with and without matching
    the teacher's embedding) stopped by its time budget after one step and resumed gives the weights of an
    uninterrupted run, the feature map's included."""
    common = [*TINY, "--data", str(data), "--epochs", "1", "--augment", "art", "--mixup", "0.4", *features]
    common += ["--teacher", str(teacher_ckpt), "--kd-weight", "0.8", "--class-weights", "balanced"]
    straight = train.main(train.parse_args([*common, "--output", str(tmp_path / "straight")]))
    pieces = tmp_path / "pieces"
    train.main(train.parse_args([*common, "--output", str(pieces), "--time-budget", "1e-6"]))
    state = load_checkpoint(pieces / "last.pt")["resume"]
    assert (state["epoch"], state["step"]) == (0, 1), f"a spent budget should stop after one step: {state}"
    train.main(train.parse_args([*common, "--output", str(pieces), "--resume"]))
    record = load_checkpoint(pieces / "best.pt")["training"]
    assert record["teacher"] == [str(teacher_ckpt)] and record["args"]["class_weights"] == "balanced", record["args"]
    a = load_checkpoint(straight / "last.pt")["state_dict"]
    b = load_checkpoint(pieces / "last.pt")["state_dict"]
    for key in a:
        assert torch.allclose(a[key].float(), b[key].float(), atol=1e-6), f"{key} differs after budget + resume"
    maps = [load_checkpoint(run / "last.pt")["resume"]["feature_match"] for run in (straight, pieces)]
    assert (maps[0] is None) == (not features), "the feature map is saved exactly when --kd-features trains one"
    for key in maps[0] or {}:
        assert torch.allclose(maps[0][key], maps[1][key], atol=1e-6), f"feature map {key} differs after resume"
    assert not any("proj" in k for k in load_checkpoint(pieces / "best.pt")["state_dict"]), "map leaked into model"


def test_feature_match_is_one_minus_cosine_and_pulls_the_student_towards_the_teachers_embedding(data):
    torch.manual_seed(0)
    student = ArtVGG(len(CLASSES), "tiny_vgg").train()
    teacher = opinionated_teacher(data)
    match = distill.FeatureMatch(student, teacher)
    x = torch.randint(0, 256, (6, 3, 64, 64), dtype=torch.uint8)
    with torch.no_grad():
        teacher(F.interpolate(x.float(), size=(224, 224)))
    target = match.teacher_features.flatten(1)
    assert target.shape == (6, teacher.net._fc.in_features), target.shape
    optimizer = torch.optim.Adam([*student.parameters(), *match.parameters()], lr=3e-3)
    losses = []
    for _ in range(40):
        student(x.float() / 255)
        hidden = match.student_features
        loss = match.loss()
        by_hand = (1 - F.cosine_similarity(match.proj(hidden), target, dim=1)).mean()
        assert loss.item() == pytest.approx(by_hand.item(), abs=1e-5), "the loss is 1 - cos of map(student), teacher"
        optimizer.zero_grad()
        loss.backward()
        assert student.classifier[3].weight.grad.abs().sum() > 0, "the feature loss must reach the student"
        optimizer.step()
        losses.append(loss.item())
    assert 0 <= losses[-1] < 0.2 * losses[0], f"matching one batch's embedding should become easy: {losses[::8]}"


def test_feature_match_needs_exactly_one_teacher(tmp_path, data, teacher_ckpt):
    with pytest.raises(SystemExit, match="--teacher"):
        train.main(train.parse_args([*TINY, "--data", str(data), "--output", str(tmp_path / "a"), "--kd-features=1"]))
    pair = teacher_model.load_teachers([teacher_ckpt, teacher_ckpt], CLASSES)
    with pytest.raises(SystemExit, match="one --teacher"):
        distill.FeatureMatch(ArtVGG(len(CLASSES), "tiny_vgg"), pair)
