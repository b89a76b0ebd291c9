"""What the load tools measure: a running server or a throwaway one, and the random-weight checkpoint fixture.

``--url``/``--management`` point at a server that is already running. ``--checkpoint PATH`` or
``--random-weights ARCH`` start a throwaway TorchServe on free loopback ports for the run and stop
it afterwards; random weights measure throughput and memory only, never classification.
:func:`random_checkpoint` is the one such fixture: the benchmarks, the cold-start measurement and the
tests all make theirs with it.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil
import torch
from PIL import Image

from deploy.archive import build_archive
from deploy.docker.model_ready import describe
from deploy.server import Ports, start_server
from handlers import MODEL_NAME
from handlers.model import ArtVGG, save_checkpoint
from handlers.preprocessing import PreprocessConfig
from training import DATA_DIR

#: The art5 data set's classes (its folder names): the labels of every random-weight fixture.
LABELS = ["drawings", "engraving", "iconography", "painting", "sculpture"]
#: ``tiny_vgg``'s preprocessing: 64 px crops, so that a forward pass takes milliseconds on a CPU.
TINY_PREPROCESS = PreprocessConfig(resize=72, crop=64)


@dataclass(frozen=True)
class Target:
    inference_url: str
    management_url: str
    model: str
    description: str  # what is being served, for the report

    @property
    def predict_url(self) -> str:
        return f"{self.inference_url}/predictions/{self.model}"

    def model_status(self) -> dict:
        """The management API's description of the model's (first) version."""
        return describe(self.management_url, self.model, timeout=10)[0]

    def queue_limit(self) -> int:
        """job_queue_size as the server reports it (remaining + pending capacity of the model's queue)."""
        queue = self.model_status()["jobQueueStatus"]
        return int(queue["remainingCapacity"]) + int(queue["pendingRequests"])

    def frontend_pid(self) -> int | None:
        """The process listening on the inference port (TorchServe's Java frontend)."""
        port = int(self.inference_url.rsplit(":", 1)[1].split("/")[0])
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr.port == port and conn.pid:
                return conn.pid
        return None

    def worker_pids(self) -> list[int]:
        return [int(w["pid"]) for w in self.model_status().get("workers", []) if w.get("pid")]


def add_target_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("target (a running server, or a throwaway one started for the run)")
    g.add_argument("--url", default="http://127.0.0.1:8080", help="inference address (default: %(default)s)")
    g.add_argument("--management", default="http://127.0.0.1:8081", help="management address (default: %(default)s)")
    g.add_argument("--model", default=MODEL_NAME, help="model name (default: %(default)s)")
    g.add_argument("--checkpoint", default=None, help="start a throwaway server for this checkpoint (default: off)")
    g.add_argument(
        "--random-weights",
        default=None,
        metavar="ARCH",
        help="start a throwaway server with a random-weight ARCH (vgg16_bn, tiny_vgg): throughput/memory only "
        "(default: off)",
    )
    g.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="config.properties override for a throwaway server, e.g. job_queue_size=16 (default: none)",
    )


def random_checkpoint(
    path: Path, arch: str, labels: list[str] = LABELS, dtype: torch.dtype = torch.float32, seed: int = 0
) -> Path:
    """A random-weight checkpoint with no training record: ``deploy.serve`` refuses it unless told it is a
    throughput/memory fixture; it is never a classifier. ``tiny_vgg`` gets :data:`TINY_PREPROCESS`."""
    torch.manual_seed(seed)
    preprocess = TINY_PREPROCESS if arch == "tiny_vgg" else PreprocessConfig()
    note = {"note": "random weights: for throughput and memory measurements only, never a classifier"}
    save_checkpoint(path, ArtVGG(len(labels), arch), labels, preprocess, dtype=dtype, extra=note)
    return path


@contextlib.contextmanager
def target(args: argparse.Namespace) -> Iterator[Target]:
    """The server to measure; a throwaway one is always stopped, even on failure."""
    if not (args.checkpoint or args.random_weights):
        yield Target(args.url.rstrip("/"), args.management.rstrip("/"), args.model, f"running server at {args.url}")
        return
    overrides = dict(kv.split("=", 1) for kv in args.set)
    with tempfile.TemporaryDirectory(prefix="artserve-load-") as tmp:
        tmp = Path(tmp)
        if args.checkpoint:
            checkpoint, what = Path(args.checkpoint), f"checkpoint {args.checkpoint}"
        else:
            checkpoint = random_checkpoint(tmp / "random.pt", args.random_weights)
            what = f"random-weight {args.random_weights} (throughput/memory only)"
        mar = build_archive(checkpoint, tmp / "store")
        server = start_server(mar, tmp / "run", Ports.free(), bind="127.0.0.1", overrides=overrides)
        try:
            took = server.wait_ready(300)
            print(f"throwaway TorchServe READY after {took:.0f} s: {what}, overrides {overrides or 'none'}")
            yield Target(server.inference_url, server.management_url, server.name, what)
        finally:
            server.stop()


def write_results(out: Path, csv_name: str, rows: list[dict], fields: list[str], summary: dict, plot, png: str) -> None:
    """Write ``rows`` as CSV, ``summary.json`` and a plot into ``out``, and print the summary."""
    with open(out / csv_name, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    plot(rows, summary, out / png)
    print(json.dumps(summary, indent=2))
    print(f"wrote {out}/{csv_name}, summary.json, {png}")


def default_image() -> bytes:
    """The first validation image of the art dataset, else a generated 640x480 JPEG."""
    sample = next(iter(sorted((DATA_DIR / "val").glob("*/*.jpg"))), None) if DATA_DIR.exists() else None
    if sample:
        return sample.read_bytes()
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)).save(buf, "JPEG", quality=85)
    return buf.getvalue()
