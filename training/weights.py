"""Starting weights for the student: torchvision's ImageNet VGG weights, a local state dict, or none."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from handlers.card import sha256_file
from handlers.model import IMAGENET_WEIGHTS, ArtVGG, build_model, load_checkpoint


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


def load_init(model: ArtVGG, path: str, labels: list[str], held_out: set[str], dev: dict) -> dict:
    """Start ``model`` from a whole artserve checkpoint (a run's ``best.pt`` or an exported model), head included.

    For fine-tuning a trained model further (another input size, a teacher, curators' labels, another collection
    with the same labels) instead of starting from scratch. The checkpoint must have this run's architecture and
    labels, and must not have trained on any image this run holds out (``held_out``: content digests of its dev
    and validation images, against the record's ``train_images_sha256_16``), or the dev figures that pick the
    epoch and the validation figures would be optimistic. Records written before those digests existed pass only
    when they held out the same dev split (``dev``: its description and class counts). Returns what the record
    and the model card keep about the checkpoint.
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
    if "train_images_sha256_16" in training:
        seen = held_out & set(training["train_images_sha256_16"])
        if seen:
            raise SystemExit(
                f"--init-from {path} trained on {len(seen)} of this run's dev or validation images (same file "
                "contents): its dev and validation figures would be optimistic; hold out other images or start "
                "from a model that never saw them"
            )
    else:  # an older record: the same dev split (description and class counts), and val is a separate folder
        counts = (training.get("class_counts") or {}).get("dev")
        if training.get("dev_split") != dev["split"] or counts != dev["counts"]:
            raise SystemExit(
                f"--init-from {path} does not list its training images and held out other dev images "
                f"({training.get('dev_split')!r}, {counts} against {dev['split']!r}, {dev['counts']}): it may have "
                "trained on this run's dev images; use the same data, --dev-fraction and --seed"
            )
    model.load_state_dict(build_model(ckpt, labels)[0].state_dict())  # float32, like every served checkpoint
    return {
        "path": str(path),
        "sha256": sha256_file(path),
        "epoch": training.get("epoch"),
        "train_seconds": training.get("train_seconds"),
        "image_size": (training.get("args") or {}).get("image_size"),
        "machine": training.get("machine"),
        "pretrained": training.get("pretrained"),
        "teacher": training.get("teacher"),
        "init_from": training.get("init_from"),
        "best_dev": training.get("best_dev"),
    }
