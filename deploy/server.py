"""A local TorchServe serving an artserve archive: its ports, its rendered configuration, its process group.

:func:`start_server` starts one in its own process group with its own run folder (config, logs, pid file,
TMPDIR), so several can run side by side (tests and benchmarks use free ports) and :meth:`Server.stop` ends
every process it started. Readiness is the management API's ``GET /models/<name>`` showing a READY worker,
not ``/ping``. The command line around it is ``deploy/serve.py`` (``make serve``).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from deploy import ROOT, tool
from deploy.docker.model_ready import describe, ready_workers

CONFIG = ROOT / "deploy" / "config" / "config.properties"
METRICS_CONFIG = ROOT / "deploy" / "config" / "metrics.yaml"


@dataclass(frozen=True)
class Ports:
    inference: int = 8080
    management: int = 8081
    metrics: int = 8082
    worker: int = 9000  # first port of the frontend-to-worker sockets (/tmp/.ts.sock.<port>)
    # TorchServe 0.12 always starts its gRPC servers (loopback by default); their ports must differ
    # per server too, or a second server on the host fails with "Failed to bind to address :7070".
    grpc_inference: int = 7070
    grpc_management: int = 7071

    @classmethod
    def free(cls) -> Ports:
        """Six distinct free ports (held open together while choosing, so none is picked twice)."""
        sockets = [socket.socket() for _ in range(6)]
        try:
            for s in sockets:
                s.bind(("127.0.0.1", 0))
            return cls(*(s.getsockname()[1] for s in sockets))
        finally:
            for s in sockets:
                s.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read_properties(path: Path) -> dict[str, str]:
    props = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            props[key.strip()] = value.strip()
    return props


def _with_port(address: str, port: int, bind: str | None) -> str:
    scheme, rest = address.split("://", 1)
    host = bind or rest.rsplit(":", 1)[0]
    return f"{scheme}://{host}:{port}"


def render_config(
    run_dir: Path,
    model_store: Path,
    mar_name: str,
    ports: Ports,
    bind: str | None = None,
    overrides: dict | None = None,
) -> Path:
    """deploy/config.properties with this run's ports, paths and any ``overrides``, in ``run_dir``."""
    props = read_properties(CONFIG)
    props["inference_address"] = _with_port(props["inference_address"], ports.inference, bind)
    props["management_address"] = _with_port(props["management_address"], ports.management, bind or "127.0.0.1")
    props["metrics_address"] = _with_port(props["metrics_address"], ports.metrics, bind)
    props["initial_worker_port"] = str(ports.worker)
    props["grpc_inference_port"] = str(ports.grpc_inference)
    props["grpc_management_port"] = str(ports.grpc_management)
    props["model_store"] = str(model_store.resolve())
    props["allowed_urls"] = (
        "^file://" + re.escape(str(model_store.resolve())).replace("\\", "\\\\") + "/[A-Za-z0-9._-]+\\\\.mar$"
    )
    props["metrics_config"] = str(METRICS_CONFIG)
    props["load_models"] = mar_name
    props.update(overrides or {})
    path = run_dir / "config.properties"
    path.write_text("".join(f"{k}={v}\n" for k, v in props.items()), encoding="utf-8")
    return path


class Server:
    """A TorchServe process group started by :func:`start_server`."""

    def __init__(self, run_dir: Path, ports: Ports, name: str, pid: int, host: str = "127.0.0.1") -> None:
        self.run_dir, self.ports, self.name, self.pid, self.host = run_dir, ports, name, pid, host

    @property
    def inference_url(self) -> str:
        return f"http://{self.host}:{self.ports.inference}"

    @property
    def management_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.management}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.host}:{self.ports.metrics}/metrics"

    @property
    def predict_url(self) -> str:
        return f"{self.inference_url}/predictions/{self.name}"

    @property
    def log_dir(self) -> Path:
        return self.run_dir / "logs"

    def alive(self) -> bool:
        """True while any process of the server's group runs (our own exited child is reaped first)."""
        try:
            os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            pass
        try:
            os.killpg(self.pid, 0)
            return True
        except (ProcessLookupError, PermissionError):
            return False

    def model_status(self) -> list[dict]:
        """The management API's description of the model (workers and their status)."""
        return describe(self.management_url, self.name, timeout=5)

    def is_ready(self) -> bool:
        try:
            return ready_workers(self.model_status()) > 0
        except (OSError, ValueError):  # not answering yet (urllib's errors are OSErrors), or not JSON
            return False

    def wait_ready(self, timeout: float = 180.0) -> float:
        """Block until a worker is READY; return the seconds waited. Raises with the log tail on failure."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            if self.is_ready():
                return time.monotonic() - start
            if not self.alive():
                raise RuntimeError(f"TorchServe exited before the model was READY.\n{self.log_tail()}")
            time.sleep(0.25)
        raise TimeoutError(f"model {self.name} not READY after {timeout:.0f} s.\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        out = []
        for name in ("torchserve.out", "model_log.log", "ts_log.log"):
            path = self.log_dir / name
            if path.exists():
                tail = path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
                out.append(f"--- {path} (last {len(tail)} lines)\n" + "\n".join(tail))
        return "\n".join(out) or f"(no logs in {self.log_dir})"

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM the whole process group (frontend, launcher, workers), SIGKILL after ``timeout``."""
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(self.pid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and self.alive():
                time.sleep(0.1)
            if not self.alive():
                break
        (self.run_dir / "torchserve.pid").unlink(missing_ok=True)

    def save(self) -> None:
        state = {"pid": self.pid, "ports": self.ports.__dict__, "name": self.name, "host": self.host}
        (self.run_dir / "torchserve.pid").write_text(json.dumps(state), encoding="utf-8")

    @classmethod
    def load(cls, run_dir: Path) -> Server | None:
        path = run_dir / "torchserve.pid"
        if not path.exists():
            return None
        state = json.loads(path.read_text(encoding="utf-8"))
        return cls(run_dir, Ports(**state["ports"]), state["name"], state["pid"], state.get("host", "127.0.0.1"))


def start_server(
    mar: Path,
    run_dir: Path,
    ports: Ports | None = None,
    bind: str | None = None,
    overrides: dict | None = None,
    env: dict | None = None,
) -> Server:
    """Start TorchServe serving ``mar`` (its folder is the model store); returns at once."""
    mar = Path(mar).resolve()
    ports = ports or Ports()
    run_dir = Path(run_dir).resolve()
    (run_dir / "logs").mkdir(parents=True, exist_ok=True)
    (run_dir / "tmp").mkdir(exist_ok=True)
    config = render_config(run_dir, mar.parent, mar.name, ports, bind, overrides)
    torchserve = tool("torchserve")
    proc_env = dict(os.environ)
    proc_env.update(
        TMPDIR=str(run_dir / "tmp"),  # TorchServe's pid file lives there: one per server
        LOG_LOCATION=str(run_dir / "logs"),
        METRICS_LOCATION=str(run_dir / "logs"),
        PATH=f"{torchserve.parent}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    # Workers import the handler code from the archive only: the checkout leaves PYTHONPATH, other entries stay
    # (TorchServe itself, where it was installed with pip --target, as on a GPU machine: loadtests/bench_gpu.sh).
    others = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and Path(p).resolve() != ROOT]
    proc_env["PYTHONPATH"] = os.pathsep.join(others)
    if not others:
        del proc_env["PYTHONPATH"]
    proc_env.update(env or {})
    with open(run_dir / "logs" / "torchserve.out", "ab") as out:
        proc = subprocess.Popen(
            [str(torchserve), "--start", "--foreground", "--ncs", "--ts-config", str(config)],
            cwd=run_dir,
            env=proc_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    name = mar.stem
    host = "127.0.0.1" if bind in (None, "0.0.0.0") else bind
    server = Server(run_dir, ports, name, proc.pid, host)
    server.save()
    return server
