"""Model cards: ``<checkpoint>.card.json`` beside a checkpoint, ``model_card.json`` inside the archive.

A card describes one checkpoint file (its ``weights_sha256``) and names its ``version``, which the server
answers as ``model_version``. ``training.export`` writes cards, ``deploy.archive`` packs one (or a minimal
one derived from the checkpoint) and the handler reads it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path

#: The card's file name inside the archive (and so in the handler's model directory).
ARCHIVE_CARD = "model_card.json"


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def default_card_path(checkpoint: str | Path) -> Path:
    """``run/best.pt`` -> ``run/best.card.json``: where training.export writes the model card."""
    return Path(checkpoint).with_suffix(".card.json")


def load_or_make_card(checkpoint: Path, card_path: Path | None, ckpt: Mapping, name: str) -> dict:
    """The checkpoint's model card, or a minimal one derived from the checkpoint itself."""
    card_path = card_path or default_card_path(checkpoint)
    weights_sha = sha256_file(checkpoint)
    if card_path.exists():
        card = json.loads(card_path.read_text(encoding="utf-8"))
        if card.get("weights_sha256") not in (None, weights_sha):
            raise ValueError(
                f"model card {card_path} describes weights {card['weights_sha256'][:12]}, "
                f"but {checkpoint} is {weights_sha[:12]}: export the card and checkpoint together"
            )
    else:
        card = {"name": name, "arch": ckpt["arch"], "labels": list(ckpt["labels"])}
        if "training" in ckpt:
            card["training"] = ckpt["training"]
    card.setdefault("name", name)
    card["weights_sha256"] = weights_sha
    card.setdefault("version", f"{ckpt['arch']}-{weights_sha[:12]}")
    return card


def card_version(card_path: str | Path | None, fallback: str) -> str:
    """The ``version`` of the card at ``card_path``; ``fallback`` when there is no card or it names none."""
    if card_path is not None and Path(card_path).exists():
        version = json.loads(Path(card_path).read_text(encoding="utf-8")).get("version")
        if version:
            return str(version)
    return fallback
