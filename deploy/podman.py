"""podman as make image, image-check and kube-play call it, and the checks they share: READY through the pod's own
probe, then `make smoke` against the published port."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

from deploy import ROOT
from handlers import MODEL_NAME

CONTAINERS_CONF = ROOT / "deploy" / "docker" / "containers.conf"
# The laptop overlay's image (deploy/k8s/overlays/laptop/kustomization.yaml: artserve:cpu). podman resolves the
# short name to localhost/artserve:cpu, the image built here, so the rendered manifests need no image rewrite.
IMAGE = "localhost/artserve:cpu"
# Executable -> Debian package; catatonit is the pause process of kube play's infra container.
TOOLS = {"podman": "podman", "runc": "runc", "debootstrap": "debootstrap", "catatonit": "catatonit"}
PROBE = ["python", "/home/model-server/model_ready.py"]


def podman(
    *args: str, check: bool = True, capture: bool = False, quiet: bool = False, **kw
) -> subprocess.CompletedProcess:
    """``podman --runtime runc ARGS`` with the checked-in containers.conf."""
    env = {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)}
    cmd = ["podman", "--runtime", "runc", *args]
    if not quiet:
        print("+", " ".join(cmd), flush=True)
    return subprocess.run(cmd, check=check, env=env, text=True, capture_output=capture, **kw)


def ensure_tools() -> None:
    """apt-get install podman, runc, debootstrap, catatonit when one is missing (as `make system-deps` does)."""
    missing = [
        pkg for tool, pkg in TOOLS.items() if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists()
    ]
    if not missing:
        return
    print(f"installing Debian packages: {' '.join(missing)}", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing], check=True, env=env)


def image_exists(name: str) -> bool:
    return podman("image", "exists", name, check=False).returncode == 0


def image_size_mb(name: str) -> float:
    out = podman("image", "inspect", "--format", "{{.Size}}", name, capture=True).stdout
    return int(out.strip()) / 1e6


def wait_ready(container: str, timeout: float, started: float) -> float:
    """Run the startup probe in the container every second until it passes; seconds since ``started``."""
    print(f"waiting for READY: podman exec {container} {' '.join(PROBE)} every second", flush=True)
    reason = ""
    while time.monotonic() - started < timeout:
        probe = podman("exec", container, *PROBE, check=False, capture=True, quiet=True)
        if probe.returncode == 0:
            return time.monotonic() - started
        reason = (probe.stdout + probe.stderr).strip()
        time.sleep(1)
    logs = podman("logs", "--tail", "40", container, check=False, capture=True)
    raise SystemExit(f"{container} not READY after {timeout:.0f} s ({reason})\n{logs.stdout}{logs.stderr}")


def smoke(port: int, metrics_port: int) -> None:
    """`make smoke` against a published port (a subprocess: the load tests sit above deploy in the layers)."""
    smoke_args = (
        f"--url http://127.0.0.1:{port}/predictions/{MODEL_NAME} --metrics http://127.0.0.1:{metrics_port}/metrics"
    )
    subprocess.run(["make", "--no-print-directory", "-C", str(ROOT), "smoke", f"SMOKE_ARGS={smoke_args}"], check=True)
