"""deploy.container's and deploy.kube_play's inputs agree with the Dockerfile and the manifests (no container engine
needed here; `make image-check` and `make kube-play` run the real thing, deploy/k8s/README.md "Build and run it
here")."""

from __future__ import annotations

import copy
import shutil

import pytest
import tomllib

from deploy import ROOT, container, kube_play, podman
from deploy.k8s.check import render
from tests.unit.test_k8s_docker import instructions, pyproject_pins


def test_the_wheelhouse_is_filled_with_the_dockerfiles_pins_which_are_pyprojects():
    pins = dict(pin.split("==", 1) for pin in container.dockerfile_pins())
    expected = pyproject_pins()
    assert "torch" in pins and "torchserve" in pins, f"pins parsed from the Dockerfile: {pins}"
    assert all(expected.get(name) == version for name, version in pins.items()), (
        f"the wheelhouse would hold other versions than pyproject.toml pins: {pins} vs {expected}"
    )


def test_base_and_ca_bundle_are_build_arguments_with_the_documented_defaults():
    ops = instructions()
    first_from = next(i for i, (op, _) in enumerate(ops) if op == "FROM")
    args_before = [a for op, a in ops[:first_from] if op == "ARG"]
    assert any(a.startswith("BASE=") for a in args_before), f"BASE must be an ARG before FROM: {args_before}"
    assert ops[first_from][1] == "${BASE}", f"FROM does not use BASE: {ops[first_from]}"
    ca = [a for op, a in ops if op == "ARG" and a.startswith("CA_BUNDLE")]
    assert ca == ["CA_BUNDLE="], f"CA_BUNDLE must default to empty (no extra CA unless asked): {ca}"


def test_the_pip_step_reads_the_wheelhouse_the_module_fills_and_the_context_lets_it_through():
    (pip,) = [a for op, a in instructions() if op == "RUN" and "pip install" in a]
    wheelhouse = container.WHEELHOUSE.relative_to(ROOT).as_posix()
    assert pip.startswith("--mount=type=bind,target=/ctx"), f"the pip step does not mount the build context: {pip}"
    assert f"/ctx/{wheelhouse}" in pip and "--no-index" in pip, f"the pip step ignores /ctx/{wheelhouse}: {pip}"
    ignore = container.IGNOREFILE.read_text(encoding="utf-8").splitlines()
    assert f"!{wheelhouse}/" in ignore, f"{container.IGNOREFILE.name} keeps {wheelhouse}/ out of the context"
    assert f"/{wheelhouse}/" in (ROOT / ".gitignore").read_text(encoding="utf-8"), "the wheelhouse is not git-ignored"


def test_containers_conf_clears_the_default_ulimits_and_picks_runc():
    conf = tomllib.loads(podman.CONTAINERS_CONF.read_text(encoding="utf-8"))
    assert conf["containers"]["default_ulimits"] == [], f"default ulimits not cleared: {conf}"
    assert conf["engine"]["runtime"] == "runc", f"crun fails on the VM's hybrid cgroups: {conf}"


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (with kustomize) is not installed")
def test_kube_play_input_is_the_rendered_overlay_plus_host_ports_and_restart_policy_only():
    plain = render(kube_play.OVERLAY)
    played = kube_play.render_for_podman(kube_play.OVERLAY, 18090, 18092)
    pod = next(d for d in played if d["kind"] == "Deployment")["spec"]["template"]["spec"]
    ports = {p["containerPort"]: p.get("hostPort") for c in pod["containers"] for p in c.get("ports", [])}
    assert ports == {8080: 18090, 8082: 18092}, f"host ports for kube play: {ports}"
    assert pod["restartPolicy"] == "OnFailure", "podman 4.3 would restart the finished init container (Always)"
    stripped = copy.deepcopy(played)
    for doc in stripped:
        spec = doc.get("spec", {}).get("template", {}).get("spec", {})
        spec.pop("restartPolicy", None)
        for c in spec.get("containers", []):
            for p in c.get("ports", []):
                p.pop("hostPort", None)
    assert stripped == plain, "render_for_podman changed more than the host ports and the restart policy"
    images = {c["image"] for c in pod["containers"] + pod["initContainers"]}
    assert {f"localhost/{image}" for image in images} == {podman.IMAGE}, (
        f"the overlay's image {images} does not resolve to the one make image builds ({podman.IMAGE})"
    )
    hook = kube_play.pre_stop_command(played)
    assert "--drain" in hook and "/home/model-server/model_ready.py" in hook, f"preStop is not the drain: {hook}"
