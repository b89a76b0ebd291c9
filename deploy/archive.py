"""Build a TorchServe model archive (.mar) from an artserve checkpoint.

    python -m deploy.archive --checkpoint model_store/art-category.pt [--model-card CARD.json]

The archive holds the checkpoint, ``index_to_name.json`` generated from the checkpoint's labels, the
model card (``model_card.json``, whose ``version`` the handler reports as ``model_version``), the
``handlers`` package and ``deploy/config/model-config.yaml`` (dynamic batching settings).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import yaml

from deploy import ROOT, tool
from handlers import MODEL_NAME
from handlers.card import ARCHIVE_CARD, default_card_path, load_or_make_card
from handlers.labels import write_label_map
from handlers.model import build_model, load_checkpoint

HANDLERS_DIR = ROOT / "handlers"
DEFAULT_MODEL_CONFIG = ROOT / "deploy" / "config" / "model-config.yaml"
MODEL_STORE = ROOT / "model_store"


# Dynamic-batching settings a deployment may set without another model-config.yaml: flag, environment variable,
# TorchServe key. The GPU overlay sets them on the init container (deploy/k8s/overlays/gpu).
BATCHING = (
    ("batch_size", "ARTSERVE_BATCH_SIZE", ("batchSize",)),
    ("max_batch_delay", "ARTSERVE_MAX_BATCH_DELAY", ("maxBatchDelay",)),
    ("workers", "ARTSERVE_WORKERS", ("minWorkers", "maxWorkers")),
)


def batching_overrides(
    batch_size: int | None = None, max_batch_delay: int | None = None, workers: int | None = None
) -> dict[str, int]:
    """The model-config keys to replace: each argument given, else its ``ARTSERVE_*`` variable, else nothing."""
    given = {"batch_size": batch_size, "max_batch_delay": max_batch_delay, "workers": workers}
    out: dict[str, int] = {}
    for name, env, keys in BATCHING:
        value = given[name]
        if value is None and os.environ.get(env, "").strip():
            try:
                value = int(os.environ[env])
            except ValueError:
                raise ValueError(f"{env}={os.environ[env]!r} is not a whole number") from None
        if value is None:
            continue
        if value < (0 if name == "max_batch_delay" else 1):
            raise ValueError(f"{name.replace('_', '-')} {value} is out of range")
        out.update(dict.fromkeys(keys, value))
    return out


def describe(batching: dict[str, int]) -> str:
    """``", batchSize 8, maxBatchDelay 50"`` for a log line; empty without overrides."""
    return "".join(f", {k} {v}" for k, v in batching.items())


def write_model_config(source: str | Path, target: str | Path, overrides: dict) -> Path:
    """``source`` (a TorchServe model-config.yaml) with ``overrides`` replacing its top-level keys, at ``target``."""
    settings = yaml.safe_load(Path(source).read_text(encoding="utf-8")) or {}
    settings.update(overrides)
    Path(target).write_text(yaml.safe_dump(settings, sort_keys=False), encoding="utf-8")
    return Path(target)


def is_up_to_date(mar: Path, inputs: list[Path]) -> bool:
    """True when ``mar`` exists and is newer than every input file."""
    if not mar.exists():
        return False
    built = mar.stat().st_mtime
    return all(p.stat().st_mtime <= built for p in inputs if p.exists())


def archive_inputs(checkpoint: Path, card_path: Path | None, model_config: Path) -> list[Path]:
    files = [checkpoint, model_config, *sorted(HANDLERS_DIR.glob("*.py"))]
    files.append(card_path or default_card_path(checkpoint))
    return files


def build_archive(
    checkpoint: str | Path,
    export_path: str | Path = MODEL_STORE,
    name: str = MODEL_NAME,
    model_card: str | Path | None = None,
    model_config: str | Path = DEFAULT_MODEL_CONFIG,
    handler: str | Path = HANDLERS_DIR / "art_handler.py",
    batching: dict | None = None,
) -> Path:
    """Check the checkpoint loads with its labels, then write ``<export_path>/<name>.mar``.

    ``handler`` is the TorchServe handler module; tests pass a subclass of ``ArtHandler`` (a slow one).
    ``batching`` (from :func:`batching_overrides`) replaces the model-config's batch size, delay or workers in
    the archive; the command line and ``deploy.serve`` pass the flags and ``ARTSERVE_*`` variables."""
    checkpoint, model_config = Path(checkpoint), Path(model_config)
    card_path = Path(model_card) if model_card else None
    ckpt = load_checkpoint(checkpoint)
    build_model(ckpt)  # fails here, not in the server, if weights, arch and labels disagree
    card = load_or_make_card(checkpoint, card_path, ckpt, name)
    export_path = Path(export_path)
    export_path.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory(prefix="artserve-mar-") as tmp:
        extra, staged = Path(tmp) / "extra", Path(tmp) / "out"
        shutil.copytree(HANDLERS_DIR, extra / "handlers", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        write_label_map(extra / "index_to_name.json", ckpt["labels"])
        (extra / ARCHIVE_CARD).write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
        if batching:
            model_config = write_model_config(model_config, Path(tmp) / "model-config.yaml", batching)
        archiver = tool("torch-model-archiver")
        cmd = [
            str(archiver),
            "--model-name",
            name,
            "--version",
            str(card["version"]),
            "--serialized-file",
            str(checkpoint),
            "--handler",
            str(handler),
            "--extra-files",
            str(extra),
            "--config-file",
            str(model_config),
            "--export-path",
            str(staged),
            "--force",
        ]
        # torch-model-archiver stages files in $TMPDIR/<model name>: a private TMPDIR keeps concurrent builds
        # of the same model name from colliding, and the finished archive is renamed into place in one step,
        # so a server reading the model store never sees a half-written .mar.
        (Path(tmp) / "tmp").mkdir()
        staged.mkdir()
        env = {**os.environ, "TMPDIR": str(Path(tmp) / "tmp")}
        subprocess.run(cmd, check=True, env=env)
        mar = export_path / f"{name}.mar"
        fd, partial = tempfile.mkstemp(prefix=f".{name}.", suffix=".mar.partial", dir=export_path)
        os.close(fd)
        shutil.copyfile(staged / f"{name}.mar", partial)
        os.replace(partial, mar)
    return mar


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="artserve checkpoint (.pt) to pack (required)")
    p.add_argument(
        "--model-card", default=None, help="model card JSON (default: CHECKPOINT with .card.json, else generated)"
    )
    p.add_argument(
        "--model-config", default=str(DEFAULT_MODEL_CONFIG), help="TorchServe model-config.yaml (default: %(default)s)"
    )
    for name, env, keys in BATCHING:
        p.add_argument(
            f"--{name.replace('_', '-')}",
            type=int,
            default=None,
            help=f"replace the model-config's {' and '.join(keys)} (default: ${env}, else the file's value)",
        )
    p.add_argument("--name", default=MODEL_NAME, help="model name (default: %(default)s)")
    p.add_argument("--export-path", default=str(MODEL_STORE), help="output folder (default: %(default)s)")
    return p


def main(args: argparse.Namespace) -> None:
    try:
        batching = batching_overrides(args.batch_size, args.max_batch_delay, args.workers)
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None
    mar = build_archive(
        args.checkpoint, args.export_path, args.name, args.model_card, args.model_config, batching=batching
    )
    print(f"wrote {mar}{describe(batching)}")


if __name__ == "__main__":
    main(get_args_parser().parse_args())
