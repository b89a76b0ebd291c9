"""make bench's contenders: TorchServe with artserve's handler per batching configuration, the naive server, and
Apache Bench against the checked-in configuration."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import requests

from deploy import ROOT, archive
from deploy.archive import DEFAULT_MODEL_CONFIG, batching_overrides, build_archive
from deploy.server import Ports, free_port, start_server
from handlers import MODEL_NAME
from loadtests.bench_measure import measure


@dataclass(frozen=True)
class ServeConfig:
    batch: int
    delay_ms: int
    workers: int

    @property
    def overrides(self) -> dict[str, int]:
        """The model-config keys this configuration sets (``deploy.archive``'s batching overrides)."""
        return batching_overrides(self.batch, self.delay_ms, self.workers)

    @property
    def label(self) -> str:
        return f"batch {self.batch}, delay {self.delay_ms} ms, {self.workers} worker{'s' * (self.workers > 1)}"


DEFAULT_CONFIGS = "1:0:1,4:10:1,8:50:1,4:10:2"


def parse_configs(text: str) -> list[ServeConfig]:
    """``"4:10:1,8:50:1"`` (batch:delay_ms:workers, comma-separated) -> configs."""
    return [ServeConfig(*(int(x) for x in item.split(":"))) for item in text.split(",") if item.strip()]


def write_model_config(path: Path, config: ServeConfig) -> Path:
    """The checked-in model-config.yaml with ``config``'s batching, for archives not built by ``deploy.archive``."""
    return archive.write_model_config(DEFAULT_MODEL_CONFIG, path, config.overrides)


def thread_env(threads: int) -> dict[str, str]:
    return {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}


def run_served(checkpoint: Path, precision: str, config: ServeConfig, images: list[Path], work: Path, args) -> dict:
    folder = work / f"{precision}-b{config.batch}-d{config.delay_ms}-w{config.workers}"
    folder.mkdir()
    mar = build_archive(checkpoint, folder / "store", batching=config.overrides)
    # the same cores, split between the workers, unless --worker-threads oversubscribes them on purpose
    env = thread_env(args.worker_threads or max(1, args.threads // config.workers))
    env["ARTSERVE_PRECISION"] = precision
    server = start_server(mar, folder / "run", Ports.free(), bind="127.0.0.1", env=env)
    try:
        server.wait_ready(300)
        return measure(
            server.predict_url, images, args, {"torchserve_other": server.pid}, server.metrics_url, config.workers
        )
    finally:
        server.stop()


def run_naive(checkpoint: Path, precision: str, images: list[Path], args) -> dict:
    port = free_port()
    command = [sys.executable, "-m", "loadtests.naive_server", "--checkpoint", str(checkpoint), "--port", str(port)]
    command += ["--precision", precision]
    env = {**os.environ, **thread_env(args.threads)}
    proc = subprocess.Popen(command, cwd=ROOT, stdin=subprocess.DEVNULL, env=env)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                requests.get(url, timeout=2)
                break
            except requests.RequestException:
                if proc.poll() is not None:
                    raise RuntimeError(f"naive server exited with {proc.returncode}") from None
                time.sleep(0.5)
        return measure(f"{url}/predictions/{MODEL_NAME}", images, args, {"server": proc.pid})
    finally:
        proc.terminate()
        proc.wait(30)


def parse_ab(text: str) -> dict:
    """The figures of Apache Bench's report: requests/s, failures, non-2xx answers, latency percentiles (ms)."""

    def number(pattern: str, default: float | None = None) -> float | None:
        match = re.search(pattern, text, re.MULTILINE)
        return float(match.group(1)) if match else default

    return {
        "requests_per_second": number(r"^Requests per second:\s+([\d.]+)"),
        "complete": int(number(r"^Complete requests:\s+(\d+)", 0)),
        "failed": int(number(r"^Failed requests:\s+(\d+)", 0)),
        "non_2xx": int(number(r"^Non-2xx responses:\s+(\d+)", 0)),
        "p50_ms": number(r"^\s+50%\s+(\d+)"),
        "p95_ms": number(r"^\s+95%\s+(\d+)"),
        "p99_ms": number(r"^\s+99%\s+(\d+)"),
    }


def run_ab(checkpoint: Path, precision: str, image: Path, work: Path, args) -> dict:
    """``ab -k`` (HTTP/1.0 with keep-alive, as TorchServe's published figures) against the checked-in model
    configuration: our figures beside TorchServe's on the same client."""
    ab = shutil.which("ab")
    if ab is None:
        return {"skipped": "ab is not installed (apt-get install apache2-utils)"}
    folder = work / "ab"
    folder.mkdir()
    mar = build_archive(checkpoint, folder / "store")
    env = {**thread_env(args.threads), "ARTSERVE_PRECISION": precision}
    server = start_server(mar, folder / "run", Ports.free(), bind="127.0.0.1", env=env)
    try:
        server.wait_ready(300)
        command = [ab, "-k", "-q", "-n", str(args.ab_requests), "-c", str(args.ab_concurrency), "-s", "120"]
        command += ["-p", str(image), "-T", "image/jpeg", server.predict_url]
        subprocess.run(command[:4] + ["-n", str(args.ab_concurrency * 2)] + command[6:], capture_output=True)  # warm
        done = subprocess.run(command, capture_output=True, text=True, timeout=900)
    finally:
        server.stop()
    result = parse_ab(done.stdout)
    result.update(
        command=" ".join(["ab", *command[1:-1], "URL"]),
        precision=precision,
        requests=args.ab_requests,
        concurrency=args.ab_concurrency,
        returncode=done.returncode,
    )
    return result
