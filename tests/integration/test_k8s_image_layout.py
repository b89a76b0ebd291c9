"""The files the Dockerfile copies are enough for the pod: the init container's archive step runs
from exactly that layout (Dockerfile COPY lines -> a folder standing in for /home/model-server)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from deploy.archive import DEFAULT_MODEL_CONFIG
from tests.unit.test_k8s_docker import DEPLOYMENT, ROOT, instructions

pytestmark = pytest.mark.integration
HOME = "/home/model-server"


def image_layout(home: Path, checkpoint: Path) -> Path:
    """Copy what the Dockerfile COPYs into ``home``; return the WORKDIR."""
    workdir = home
    for op, args in instructions():
        if op == "WORKDIR":
            workdir = home / Path(args).relative_to(HOME)
        if op != "COPY":
            continue
        *sources, dest = args.split()
        target = home / Path(dest).relative_to(HOME) if dest.startswith("/") else workdir / dest
        for source in sources:
            path = checkpoint if source.startswith("${") else ROOT / source
            if path.is_dir():
                shutil.copytree(path, target, dirs_exist_ok=True)
            else:
                into = target / path.name if dest.endswith("/") else target
                into.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(path, into)
    return workdir


def test_init_container_builds_the_archive_from_the_image_files(tiny_checkpoint, tmp_path):
    home = tmp_path / "home"
    workdir = image_layout(home, tiny_checkpoint)
    pod = yaml.safe_load(DEPLOYMENT.read_text(encoding="utf-8"))["spec"]["template"]["spec"]
    (init,) = pod["initContainers"]
    in_image = init.get("workingDir", HOME)
    assert home / Path(in_image).relative_to(HOME) == workdir, f"the init container runs in {in_image}, not WORKDIR"
    mount = next(m["mountPath"] for m in init["volumeMounts"] if m["name"] == "model-store")
    store = home / Path(mount).relative_to(HOME)  # the emptyDir the init container writes the archive into
    store.mkdir()
    command = [arg.replace(HOME, str(home)) for arg in init["command"]]  # run as `python -m` does: cwd on sys.path
    assert command[0] == "python", f"init container command {command}"
    done = subprocess.run(
        [sys.executable, "-E", "-s", *command[1:]], cwd=workdir, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, f"archive step failed in the image layout:\n{done.stdout}{done.stderr}"
    mar = store / "art-category.mar"
    assert mar.exists(), f"no archive in the mounted model store {store}: {sorted(p.name for p in store.iterdir())}"
    with zipfile.ZipFile(mar) as archive:
        names = set(archive.namelist())
        config = yaml.safe_load(archive.read("model-config.yaml"))
    assert "handlers/art_handler.py" in names and "index_to_name.json" in names, f"archive holds {sorted(names)}"
    checked_in = yaml.safe_load(DEFAULT_MODEL_CONFIG.read_text(encoding="utf-8"))
    assert config["batchSize"] == checked_in["batchSize"], f"the archive's model-config.yaml is another: {config}"
