"""The image recipe agrees with the project: pinned versions, non-root user, paths the manifests use."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import yaml

from deploy import ROOT

DOCKERFILE = ROOT / "deploy" / "docker" / "Dockerfile"
DEPLOYMENT = ROOT / "deploy" / "k8s" / "base" / "deployment.yaml"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def pyproject_pins() -> dict[str, str]:
    """The ``name==version`` entries of pyproject.toml's dependencies list (tomllib needs Python 3.11)."""
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    block = text.split("\ndependencies = [", 1)[1].split("\n]", 1)[0]
    return dict(re.findall(r'"([A-Za-z0-9_.-]+)==([^"]+)"', block))


def test_serving_stack_pins_match_pyproject():
    pip = [args.split("pip install", 1)[1] for op, args in instructions() if op == "RUN" and "pip install" in args]
    assert pip, "no `RUN ... pip install` of the serving stack"
    pins = dict(tok.split("==", 1) for tok in shlex.split(" ".join(pip)) if "==" in tok)
    expected = pyproject_pins()
    assert {"torch", "torchvision", "torchserve", "torch-model-archiver"} <= pins.keys(), f"pins: {pins}"
    wrong = {name: (version, expected.get(name)) for name, version in pins.items() if expected.get(name) != version}
    assert not wrong, f"Dockerfile pins differ from pyproject.toml (Dockerfile, pyproject): {wrong}"


def test_runs_as_the_non_root_user_the_deployment_names():
    users = [args for op, args in instructions() if op == "USER"]
    assert users, "no USER: the image runs as root"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, f"final USER {users[-1]!r} must be a numeric non-root uid"
    pod = yaml.safe_load(DEPLOYMENT.read_text(encoding="utf-8"))["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsUser"] == int(uid), "Deployment runAsUser differs from the image's USER"


def test_entrypoint_is_torchserve_in_the_foreground_with_the_mounted_config():
    (entry,) = [args for op, args in instructions() if op == "ENTRYPOINT"]
    argv = yaml.safe_load(entry)
    assert "torchserve" in argv and "--foreground" in argv, f"entrypoint {argv}"
    assert argv[0] == "tini" and "-g" in argv, f"no init forwarding SIGTERM to the process group: {argv}"
    config = argv[argv.index("--ts-config") + 1]
    mounts = yaml.safe_load(DEPLOYMENT.read_text(encoding="utf-8"))["spec"]["template"]["spec"]["containers"][0]
    paths = {m["mountPath"] for m in mounts["volumeMounts"]}
    assert str(Path(config).parent) in paths, f"--ts-config {config} is not under a mounted path {paths}"


def test_copied_sources_exist_and_the_probe_lands_where_probes_call_it():
    copies = [args.split() for op, args in instructions() if op == "COPY"]
    for *sources, _ in copies:
        for source in sources:
            if not source.startswith("${"):
                assert (ROOT / source).exists(), f"COPY source {source} does not exist in the repository"
    destinations = {dest for *_, dest in copies}
    deployment = DEPLOYMENT.read_text(encoding="utf-8")
    assert "/home/model-server/model_ready.py" in destinations, f"probe script not copied: {destinations}"
    assert "/home/model-server/model_ready.py" in deployment, "the Deployment's probes do not call the copied script"
