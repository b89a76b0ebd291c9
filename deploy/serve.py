"""Start, check and stop a local TorchServe serving artserve's archive (the library is ``deploy/server.py``).

    python -m deploy.serve start [--checkpoint PATH]   # build the .mar if stale, start, wait for READY
    python -m deploy.serve status
    python -m deploy.serve stop

``make serve``, ``make status`` and ``make stop`` run these; one server per ``--run-dir`` (default .serve/).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from deploy import ROOT
from deploy.archive import (
    DEFAULT_MODEL_CONFIG,
    MODEL_STORE,
    archive_inputs,
    batching_overrides,
    build_archive,
    describe,
    is_up_to_date,
)
from deploy.server import Ports, Server, start_server
from handlers import MODEL_NAME
from handlers.model import load_checkpoint

DEFAULT_CHECKPOINT = MODEL_STORE / f"{MODEL_NAME}.pt"
DEFAULT_RUN_DIR = ROOT / ".serve"

NO_CHECKPOINT = """\
No trained checkpoint at {path}.

artserve never serves random weights as a classifier. To get a checkpoint:
  * train one:   make train RUN=runs/art5   (= .venv/bin/python -m training.train --output runs/art5)
                 (VGG16 trains at about 1 image/s on a 2-core CPU: use a GPU machine for the real model,
                 see docs/training.md)
  * export it:   .venv/bin/python -m training.export runs/art5 --output {path}
  * then serve:  make serve            (or directly: make serve CHECKPOINT=runs/art5/best.pt)
"""


def require_trained(checkpoint: Path, allow_untrained: bool) -> dict:
    """The checkpoint, loaded; exits with instructions when it is missing or records no training run."""
    if not checkpoint.exists():
        raise SystemExit(NO_CHECKPOINT.format(path=checkpoint))
    ckpt = load_checkpoint(checkpoint)
    if "training" not in ckpt and not allow_untrained:
        raise SystemExit(
            f"{checkpoint} records no training run (no 'training' entry): refusing to serve it as a classifier.\n"
            "Use a checkpoint written by training.train or training.export (--allow-untrained: plumbing tests only)."
        )
    return ckpt


def curl_example(server: Server, ckpt: dict) -> str:
    """A curl command for ``server`` with a validation image of the data the model was trained on, if it is here."""
    data = ckpt.get("training", {}).get("data")
    sample = next(iter(sorted(Path(data).glob("val/*/*.jpg"))), None) if data else None
    image = str(sample) if sample else "artwork.jpg"
    return (
        f"curl -H 'Content-Type: image/jpeg' --data-binary @{image} \\\n"
        f"     http://127.0.0.1:{server.ports.inference}/predictions/{server.name}"
    )


def cmd_start(args: argparse.Namespace) -> None:
    run_dir = Path(args.run_dir)
    running = Server.load(run_dir)
    if running and running.alive():
        raise SystemExit(f"a server from {run_dir} is already running (pid {running.pid}); `make stop` first")
    checkpoint = Path(args.checkpoint)
    ckpt = require_trained(checkpoint, args.allow_untrained)
    mar = Path(args.model_store) / f"{args.name}.mar"
    try:
        batching = batching_overrides()  # ARTSERVE_BATCH_SIZE, ARTSERVE_MAX_BATCH_DELAY, ARTSERVE_WORKERS
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None
    if not batching and is_up_to_date(mar, archive_inputs(checkpoint, None, Path(args.model_config))):
        print(f"archive {mar} is up to date")
    else:
        print(f"building {mar} from {checkpoint}{describe(batching)}")
        mar = build_archive(checkpoint, args.model_store, args.name, model_config=args.model_config, batching=batching)
    ports = Ports(args.inference_port, args.management_port, args.metrics_port)
    if ports != Ports():  # a server beside the default one: its worker and gRPC ports must move too
        spare = Ports.free()
        ports = Ports(
            ports.inference, ports.management, ports.metrics, spare.worker, spare.grpc_inference, spare.grpc_management
        )
    server = start_server(mar, run_dir, ports)
    print(f"starting TorchServe (logs: {server.log_dir})")
    try:
        took = server.wait_ready(args.timeout)
    except (RuntimeError, TimeoutError) as e:
        server.stop()
        raise SystemExit(str(e)) from None
    print(f"model {server.name} READY after {took:.1f} s\n")
    print(f"Classify an image:\n  {curl_example(server, ckpt)}\n")
    print(f"Metrics:  curl http://127.0.0.1:{ports.metrics}/metrics")
    print(f"Logs:     {server.log_dir}/  (model_log.log: handler, ts_log.log: frontend)")
    print("Stop:     make stop")


def cmd_stop(args: argparse.Namespace) -> None:
    server = Server.load(Path(args.run_dir))
    if server is None or not server.alive():
        print("no artserve TorchServe is running from", args.run_dir)
        return
    server.stop()
    print(f"stopped TorchServe (pid {server.pid})")


def cmd_status(args: argparse.Namespace) -> None:
    server = Server.load(Path(args.run_dir))
    if server is None or not server.alive():
        raise SystemExit("not running")
    print(json.dumps(server.model_status(), indent=2))


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=("start", "stop", "status"), help="what to do")
    p.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT), help="checkpoint to serve (default: %(default)s)")
    p.add_argument("--name", default=MODEL_NAME, help="model name (default: %(default)s)")
    p.add_argument("--model-store", default=str(MODEL_STORE), help="where the .mar goes (default: %(default)s)")
    p.add_argument("--model-config", default=str(DEFAULT_MODEL_CONFIG), help="model-config.yaml (default: %(default)s)")
    p.add_argument("--run-dir", default=str(DEFAULT_RUN_DIR), help="config, logs and pid file (default: %(default)s)")
    p.add_argument("--inference-port", type=int, default=Ports.inference, help="default: %(default)s")
    p.add_argument("--management-port", type=int, default=Ports.management, help="default: %(default)s")
    p.add_argument("--metrics-port", type=int, default=Ports.metrics, help="default: %(default)s")
    p.add_argument("--timeout", type=float, default=300, help="seconds to wait for READY (default: %(default)s)")
    p.add_argument(
        "--allow-untrained", action="store_true", help="serve a checkpoint with no training record (default: off)"
    )
    return p


def main(args: argparse.Namespace) -> None:
    {"start": cmd_start, "stop": cmd_stop, "status": cmd_status}[args.command](args)


if __name__ == "__main__":
    main(get_args_parser().parse_args())
