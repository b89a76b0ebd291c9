"""TorchServe serves with the pod's filesystem rules: as a non-root user that can write only the
emptyDir paths the Deployment mounts (model store, logs, tmp); everything else is read-only to it.

The process runs as ``nobody`` with CAP_DAC_READ_SEARCH only, so it can read the root-owned venv
but write nowhere it does not own: the same as ``readOnlyRootFilesystem`` plus the emptyDirs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from deploy.server import CONFIG, METRICS_CONFIG, Ports, Server, read_properties
from tests.images import jpeg

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root and setpriv"),
]
NOBODY = 65534


def pod_config(tmp: Path, store: Path, ports: Ports) -> dict[str, str]:
    """The pod's config.properties with loopback ports and this run's emptyDir stand-ins."""
    props = read_properties(CONFIG)
    props.update(
        inference_address=f"http://127.0.0.1:{ports.inference}",
        management_address=f"http://127.0.0.1:{ports.management}",
        metrics_address=f"http://127.0.0.1:{ports.metrics}",
        grpc_inference_port=str(ports.grpc_inference),
        grpc_management_port=str(ports.grpc_management),
        initial_worker_port=str(ports.worker),
        model_store=str(store),
        metrics_config=str(METRICS_CONFIG),
        allowed_urls=f"^file://{store}/[A-Za-z0-9._-]+\\\\.mar$",
        # The pod's /tmp is an emptyDir; here the shared /tmp may hold other users' files.
        vmargs=props["vmargs"] + f" -Djava.io.tmpdir={tmp}",
    )
    return props


def test_serves_writing_only_the_mounted_paths(tiny_mar, tmp_path):
    root = tmp_path / "pod"
    app, home, config, store, logs, tmp = (root / n for n in ("app", "home", "config", "store", "logs", "tmp"))
    for d in (app, home, config, store, logs, tmp):
        d.mkdir(parents=True)
    shutil.copy(tiny_mar, store / "art-category.mar")
    for path in (store, store / "art-category.mar", logs, tmp):
        os.chown(path, NOBODY, NOBODY)
    os.chmod(tmp_path, 0o755)
    ports = Ports.free()
    props = pod_config(tmp, store, ports)
    (config / "config.properties").write_text("".join(f"{k}={v}\n" for k, v in props.items()), encoding="utf-8")
    torchserve = Path(sys.executable).with_name("torchserve")
    env = {
        "PATH": f"{torchserve.parent}:/usr/bin:/bin",
        "HOME": str(home),
        "TMPDIR": str(tmp),
        "LOG_LOCATION": str(logs),
        "METRICS_LOCATION": str(logs),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    drop_to_nobody = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    read_anything = ["--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search"]
    command = [*drop_to_nobody, *read_anything, str(torchserve), "--start", "--foreground", "--ncs"]
    with open(root / "torchserve.out", "wb") as out:
        proc = subprocess.Popen(
            [*command, "--ts-config", str(config / "config.properties")],
            cwd=app,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Server(root, ports, "art-category", proc.pid)
    try:
        server.wait_ready(180)
        status, body = post_image(server.predict_url)
        assert status == 200, f"prediction failed as non-root: {status} {body[:200]}"
    finally:
        server.stop()
    elsewhere = [p for d in (app, home, config) for p in d.rglob("*") if p.name != "config.properties"]
    assert not elsewhere, f"TorchServe wrote outside the mounted paths: {elsewhere}"
    output = (root / "torchserve.out").read_text(encoding="utf-8", errors="replace")
    assert "Permission denied" not in output, f"a write was refused:\n{output[-3000:]}"


def post_image(url: str) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=jpeg(), headers={"Content-Type": "image/jpeg"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
