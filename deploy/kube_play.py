"""`make kube-play`: the laptop overlay under ``podman kube play`` (READY, smoke, the preStop drain, kube down)."""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import yaml

from deploy.k8s.check import render
from deploy.podman import ensure_tools, podman, smoke, wait_ready

OVERLAY = "laptop"


def render_for_podman(overlay: str, port: int, metrics_port: int) -> list[dict]:
    """The overlay as kubectl kustomize renders it, with two changes podman needs (host ports, restart policy).

    The Deployment names no hostPort (a cluster reaches pods through the Service); podman kube play publishes
    only ports that have one, so this adds them in memory. And podman 4.3 gives init containers the pod's
    restart policy, so with a Deployment's (Always) it restarts the finished archive step until kube play fails
    ("failed to remove once init container"; containers/podman#16343, fixed by #18481 in podman 4.6): the pod
    template gets restartPolicy OnFailure here. Nothing else is changed."""
    docs = render(overlay)
    host_ports = {8080: port, 8082: metrics_port}
    for doc in docs:
        if doc["kind"] == "Deployment":
            doc["spec"]["template"]["spec"]["restartPolicy"] = "OnFailure"
            for container in doc["spec"]["template"]["spec"]["containers"]:
                for p in container.get("ports", []):
                    if p["containerPort"] in host_ports:
                        p["hostPort"] = host_ports[p["containerPort"]]
    return docs


def pre_stop_command(docs: list[dict]) -> list[str]:
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    (container,) = [c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "torchserve"]
    return container["lifecycle"]["preStop"]["exec"]["command"]


def pod_containers() -> dict[str, str]:
    """Container name -> pod name of the running pods of the Deployment artserve."""
    out = podman("ps", "--all", "--pod", "--format", "json", capture=True).stdout
    return {
        c["Names"][0]: c.get("PodName", "")
        for c in json.loads(out or "[]")
        if c.get("PodName", "").startswith("artserve")
    }


def cmd_play(args: argparse.Namespace) -> None:
    ensure_tools()
    docs = render_for_podman(OVERLAY, args.port, args.metrics_port)
    kinds = [d["kind"] for d in docs]
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", prefix="artserve-play-", delete=False) as f:
        yaml.safe_dump_all(docs, f, sort_keys=False)
        manifest = f.name
    print(f"rendered overlays/{OVERLAY}: {', '.join(kinds)}", flush=True)
    podman("kube", "down", manifest, check=False, capture=True)
    started = time.monotonic()
    podman("kube", "play", manifest)
    try:
        containers = pod_containers()
        print(f"pod containers: {containers}", flush=True)
        server = next(name for name in containers if name.endswith("-torchserve"))
        ready_s = wait_ready(server, args.timeout, started)
        print(f"kube play to READY (init container's archive step included): {ready_s:.1f} s", flush=True)
        smoke(args.port, args.metrics_port)
        inspect_pod(server)
        # podman kube play does not run lifecycle hooks; run the manifest's preStop command as the kubelet would.
        hook = pre_stop_command(docs)
        drained = podman("exec", server, *hook, capture=True)
        print(f"preStop {' '.join(hook)}: {drained.stdout.strip()}", flush=True)
        stop_started = time.monotonic()
        podman("pod", "stop", "--time", "90", containers[server])
        print(f"pod stopped in {time.monotonic() - stop_started:.1f} s; last lines of the server's log:")
        podman("logs", "--tail", "5", server, check=False)
    finally:
        podman("kube", "down", manifest, check=False)
        # kube down removes the emptyDir volumes but keeps one volume per ConfigMap (named after it).
        for name in (d["metadata"]["name"] for d in docs if d["kind"] == "ConfigMap"):
            podman("volume", "rm", "--force", name, check=False)
        os.unlink(manifest)


def inspect_pod(server: str) -> None:
    """What podman made of the pod spec: user, read-only root, mounts, limits, healthcheck, stop timeout."""
    info = json.loads(podman("inspect", server, capture=True).stdout)[0]
    config, host = info["Config"], info["HostConfig"]
    summary = {
        "user": config.get("User"),
        "read_only_root": host.get("ReadonlyRootfs"),
        "cap_drop": host.get("CapDrop"),
        "security_opt": host.get("SecurityOpt"),
        "mounts": sorted(
            (m.get("Destination"), m.get("Type"), m.get("RW"), m.get("Name")) for m in info.get("Mounts", [])
        ),
        "memory_limit": host.get("Memory"),
        "cpu_quota_period": (host.get("CpuQuota"), host.get("CpuPeriod")),
        "healthcheck": config.get("Healthcheck"),
        "stop_timeout": config.get("StopTimeout"),
        "working_dir": config.get("WorkingDir"),
    }
    print("podman's view of the torchserve container:\n" + json.dumps(summary, indent=2, default=str), flush=True)
