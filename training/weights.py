"""Starting weights for the student: torchvision's ImageNet VGG weights, a local state dict, or none."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from handlers.card import sha256_file
from handlers.model import IMAGENET_WEIGHTS, ArtVGG, load_checkpoint


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


def load_init(model: ArtVGG, path: str, labels: list[str], dev: dict) -> dict:
    """Start ``model`` from a whole artserve checkpoint (a run's ``best.pt`` or an exported model), head included.

    For fine-tuning a trained model further (another resolution, a teacher, curators' labels) instead of starting
    from scratch. The checkpoint must have this run's architecture and labels and must have held out the same dev
    images (``dev``: this run's ``split`` description, ``sha256`` of its file list and class ``counts``; compared
    with what the checkpoint's record has): a model that trained on this run's dev images would make the dev
    figures that pick the epoch optimistic. Returns what the record and the model card keep about it.
    """
    try:
        ckpt = load_checkpoint(path)
    except (ValueError, FileNotFoundError) as e:
        raise SystemExit(f"--init-from: {e}") from None
    if ckpt["arch"] != model.arch or list(ckpt["labels"]) != list(labels):
        raise SystemExit(
            f"--init-from {path} is {ckpt['arch']} with labels {list(ckpt['labels'])}; "
            f"this run is {model.arch} with {list(labels)}"
        )
    training = ckpt.get("training") or {}
    if "dev_sha256" in training:  # the file list itself
        same = training["dev_sha256"] == dev["sha256"]
    else:  # records written before the digest existed: the split's description and its class counts
        same = (
            training.get("dev_split") == dev["split"]
            and (training.get("class_counts") or {}).get("dev") == dev["counts"]
        )
    if not same:
        raise SystemExit(
            f"--init-from {path} held out other dev images than this run ({training.get('dev_split')!r}, "
            f"{(training.get('class_counts') or {}).get('dev')} against {dev['split']!r}, {dev['counts']}): it may "
            "have trained on this run's dev images; use the same data, --dev-fraction and --seed"
        )
    state = {k: v.float() if v.is_floating_point() else v for k, v in ckpt["state_dict"].items()}
    model.load_state_dict(state, strict=True)
    return {
        "path": str(path),
        "sha256": sha256_file(path),
        "epoch": training.get("epoch"),
        "train_seconds": training.get("train_seconds"),
        "pretrained": training.get("pretrained"),
        "teacher": training.get("teacher"),
        "init_from": training.get("init_from"),
        "best_dev": training.get("best_dev"),
    }
