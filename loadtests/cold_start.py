"""Measure a new artserve pod's cold start on this machine: archive build plus TorchServe start to READY.

    python -m loadtests.cold_start [--arch vgg16_bn] [--repeats 2]

In the pod, an init container builds the .mar from the baked checkpoint (``deploy.archive``), then
TorchServe starts and loads the model; the readiness probe passes once a worker is READY. This script
times the same two steps with a random-weight checkpoint of the real architecture (weights do not
change load time; the model is never used as a classifier here) and prints one JSON line per repeat.
Image pull and scheduling are not included: they depend on the cluster.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import torch

from deploy.archive import build_archive
from deploy.server import Ports, start_server
from handlers.model import ARCHS
from loadtests.harness import random_checkpoint


def measure_once(arch: str, dtype: torch.dtype, work: Path, timeout: float) -> dict:
    checkpoint = random_checkpoint(work / f"{arch}.pt", arch, dtype=dtype)
    start = time.monotonic()
    mar = build_archive(checkpoint, work / "store")
    archive_s = time.monotonic() - start
    start = time.monotonic()
    server = start_server(mar, work / "run", Ports.free(), bind="127.0.0.1")
    try:
        server.wait_ready(timeout)
        ready_s = time.monotonic() - start
    finally:
        server.stop()
    return {
        "arch": arch,
        "checkpoint_dtype": str(dtype).removeprefix("torch."),
        "checkpoint_mb": round(checkpoint.stat().st_size / 2**20, 1),
        "mar_mb": round(mar.stat().st_size / 2**20, 1),
        "archive_s": round(archive_s, 2),
        "start_to_ready_s": round(ready_s, 2),
        "cold_start_s": round(archive_s + ready_s, 2),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads",
    }


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="vgg16_bn", choices=sorted(ARCHS), help="architecture (default: %(default)s)")
    p.add_argument(
        "--dtype", default="float16", choices=("float16", "float32"), help="checkpoint dtype (default: %(default)s)"
    )
    p.add_argument("--repeats", type=int, default=2, help="cold starts to measure (default: %(default)s)")
    p.add_argument("--timeout", type=float, default=300, help="seconds to wait for READY (default: %(default)s)")
    return p


def main(args: argparse.Namespace) -> None:
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory(prefix="artserve-coldstart-") as tmp:
            print(json.dumps(measure_once(args.arch, getattr(torch, args.dtype), Path(tmp), args.timeout)), flush=True)


if __name__ == "__main__":
    main(get_args_parser().parse_args())
