"""Starting weights for the student: torchvision's ImageNet VGG weights, a local state dict, or none."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from handlers.model import IMAGENET_WEIGHTS, ArtVGG


def load_pretrained(model: ArtVGG, spec: str) -> str:
    """Copy convolution weights (``features.*``) into ``model``; returns a description for the record."""
    if spec == "none":
        return "none (Kaiming initialisation, trained from scratch)"
    alternatives = "pass --pretrained PATH (a local state dict) or train from scratch with --pretrained none"
    if spec == "imagenet":
        name = IMAGENET_WEIGHTS.get(model.arch)
        if name is None:
            raise SystemExit(f"there are no ImageNet weights for --arch {model.arch}; {alternatives}")
        import torchvision

        try:
            state = torchvision.models.get_weight(name).get_state_dict(progress=True)
        except Exception as e:  # offline, proxy, disk: all end the same way
            raise SystemExit(
                f"cannot download the ImageNet weights {name} ({type(e).__name__}: {e}); {alternatives}"
            ) from None
        source = f"imagenet ({name})"
    else:
        path = Path(spec)
        if not path.is_file():
            raise SystemExit(f"--pretrained {spec}: no such file; use 'imagenet', a state-dict PATH or 'none'")
        state = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
        source = str(path)
    features = {k: v for k, v in state.items() if k.startswith("features.")}
    own = model.state_dict()
    wanted = {k for k in own if k.startswith("features.")}
    bad = sorted(k for k, v in features.items() if k not in own or own[k].shape != v.shape)
    if not features or bad or set(features) != wanted:
        missing = sorted(wanted - set(features))
        raise SystemExit(
            f"--pretrained {source} does not fit --arch {model.arch}: "
            f"{len(bad)} mismatched (e.g. {bad[:3]}), {len(missing)} missing (e.g. {missing[:3]}) feature tensors"
        )
    model.load_state_dict(features, strict=False)
    return f"{source}: {len(features)} feature tensors"


def freeze_blocks(model: ArtVGG, n: int) -> list[nn.Module]:
    """Stop gradients in the first ``n`` convolution blocks; returns them (kept in eval mode while training)."""
    blocks = model.conv_blocks()
    if not 0 <= n <= len(blocks):
        raise SystemExit(f"--freeze-blocks {n}: {model.arch} has {len(blocks)} convolution blocks")
    for block in blocks[:n]:
        block.requires_grad_(False)
    return blocks[:n]
