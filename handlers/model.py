"""The one model class: VGG from torchvision's own definition, with a head sized by the label set.

``ArtVGG`` reuses ``torchvision.models.vgg.cfgs`` and ``make_layers`` and keeps torchvision's module
names (``features.*``, ``classifier.0/3/6``), so torchvision's ImageNet convolution weights load into
it directly. Presets: ``vgg16_bn`` (the default; see docs/model.md for why),
``vgg16`` (plain, as in the reference result) and ``tiny_vgg`` (same code path, few channels, for
tests on two CPU cores).

Checkpoints are plain ``torch.save`` dictionaries of tensors and built-in types, loaded with
``weights_only=True`` (no pickled code runs at load time).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torchvision.models.vgg import cfgs, make_layers

from handlers.labels import validate_labels
from handlers.preprocessing import PreprocessConfig

CHECKPOINT_FORMAT = "artserve-checkpoint/1"


@dataclass(frozen=True)
class ArchSpec:
    """A VGG shape: torchvision's layer config (ints are conv widths, "M" a max-pool) plus the head."""

    layers: tuple
    batch_norm: bool
    hidden: int = 512
    pool: int = 1
    dropout: float = 0.5


# The head is global-average-pool + a 512-512-n MLP rather than torchvision's 7x7x512-4096-4096-1000:
# the convolutions (14.7M parameters, the part ImageNet weights help with) are VGG16's own, while the
# checkpoint stays near 30 MB in fp16 instead of 268 MB. A new label set needs a new head anyway.
ARCHS: dict[str, ArchSpec] = {
    "vgg16": ArchSpec(tuple(cfgs["D"]), batch_norm=False),
    "vgg16_bn": ArchSpec(tuple(cfgs["D"]), batch_norm=True),
    # Same structure as VGG16-BN (conv blocks separated by max-pools, a 3-layer MLP head) with few
    # channels: a forward pass takes milliseconds on a CPU. For tests only; never a default.
    "tiny_vgg": ArchSpec((8, "M", 16, "M", 16, "M", 32, "M", 32, "M"), batch_norm=True, hidden=32, pool=1),
}

#: torchvision weight enums for ``--pretrained imagenet`` (downloaded by torchvision when online).
IMAGENET_WEIGHTS = {"vgg16": "VGG16_Weights.IMAGENET1K_V1", "vgg16_bn": "VGG16_BN_Weights.IMAGENET1K_V1"}


class ArtVGG(nn.Module):
    """VGG image classifier returning logits of shape ``(N, num_classes)``."""

    def __init__(self, num_classes: int, arch: str = "vgg16_bn") -> None:
        super().__init__()
        if arch not in ARCHS:
            raise ValueError(f"unknown arch {arch!r}; choose one of {sorted(ARCHS)}")
        if num_classes < 2:
            raise ValueError(f"num_classes={num_classes}: a classifier needs at least 2 classes")
        spec = ARCHS[arch]
        self.arch = arch
        self.num_classes = num_classes
        self.features = make_layers(list(spec.layers), batch_norm=spec.batch_norm)
        last_width = [c for c in spec.layers if c != "M"][-1]
        self.avgpool = nn.AdaptiveAvgPool2d((spec.pool, spec.pool))
        self.classifier = nn.Sequential(
            nn.Linear(last_width * spec.pool * spec.pool, spec.hidden),
            nn.ReLU(True),
            nn.Dropout(p=spec.dropout),
            nn.Linear(spec.hidden, spec.hidden),
            nn.ReLU(True),
            nn.Dropout(p=spec.dropout),
            nn.Linear(spec.hidden, num_classes),
        )
        self._init_weights()

    def _init_weights(self) -> None:
        # As torchvision.models.vgg.VGG: Kaiming for convs, N(0, 0.01) for linears.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.constant_(m.bias, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        return self.classifier(x)

    def conv_blocks(self) -> list[nn.Sequential]:
        """The convolution blocks (each ending at a max-pool), for ``--freeze-blocks``."""
        blocks, current = [], []
        for layer in self.features:
            current.append(layer)
            if isinstance(layer, nn.MaxPool2d):
                blocks.append(nn.Sequential(*current))
                current = []
        return blocks


def save_checkpoint(
    path: str | os.PathLike,
    model: ArtVGG,
    labels: Sequence[str],
    preprocess: PreprocessConfig,
    dtype: torch.dtype = torch.float32,
    extra: Mapping | None = None,
) -> None:
    """Write a self-describing checkpoint: arch, labels, preprocessing and weights (``dtype``)."""
    validate_labels(labels, model.num_classes)
    state = {k: (v.to(dtype) if v.is_floating_point() else v).cpu() for k, v in model.state_dict().items()}
    ckpt = {
        "format": CHECKPOINT_FORMAT,
        "arch": model.arch,
        "labels": list(labels),
        "preprocess": preprocess.to_dict(),
        "state_dict": state,
    }
    if extra:
        ckpt.update(extra)
    torch.save(ckpt, path)


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Read and check a checkpoint written by :func:`save_checkpoint` (safe ``weights_only`` load)."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as e:
        raise ValueError(f"{path}: not a readable artserve checkpoint ({e})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(
            f"{path}: not an artserve checkpoint (expected format {CHECKPOINT_FORMAT!r}); "
            "write one with training.train or training.export"
        )
    missing = {"arch", "labels", "preprocess", "state_dict"} - set(ckpt)
    if missing:
        raise ValueError(f"{path}: checkpoint lacks {sorted(missing)}")
    return ckpt


def build_model(ckpt: Mapping, labels: Sequence[str] | None = None) -> tuple[ArtVGG, list[str], PreprocessConfig]:
    """Instantiate the model from a checkpoint dict, in float32 and eval mode.

    ``labels`` (e.g. from the archive's ``index_to_name.json``) must agree with the checkpoint's own
    labels and with the size of the head; any disagreement raises ``ValueError``.
    """
    ckpt_labels = list(ckpt["labels"])
    head = ckpt["state_dict"].get("classifier.6.weight")
    if head is None:
        raise ValueError("checkpoint has no classifier.6.weight: not an ArtVGG state dict")
    num_classes = head.shape[0]
    validate_labels(ckpt_labels, num_classes)
    if labels is not None:
        validate_labels(labels, num_classes)
    if labels is not None and list(labels) != ckpt_labels:
        raise ValueError(
            f"label map {list(labels)} does not match the labels the weights were trained with {ckpt_labels}"
        )
    model = ArtVGG(num_classes, ckpt["arch"])
    state = {k: v.float() if v.is_floating_point() else v for k, v in ckpt["state_dict"].items()}
    model.load_state_dict(state, strict=True)
    model.eval()
    return model, ckpt_labels, PreprocessConfig.from_dict(ckpt["preprocess"])
