"""Build the serving image and run it, and the laptop overlay, in a real container engine (podman).

    python -m deploy.container base     # debootstrap a Debian bookworm root and import it (skipped when present)
    python -m deploy.container wheels   # fill .whl/ with the pinned stack from the local pip configuration
    python -m deploy.container build    # the serving image from deploy/docker/Dockerfile on that base
    python -m deploy.container check    # run it as the pod would, wait for READY, then `make smoke` against it
    python -m deploy.container play     # kubectl kustomize the laptop overlay | podman kube play; READY, smoke,
                                        # the preStop drain, kube down

The Makefile's image targets call these (deploy/k8s/README.md "Build and run it here"). podman runs with
``--runtime runc`` and deploy/docker/containers.conf (CONTAINERS_CONF: no default ulimits), the two settings the
dev VM needs (issue 16). Host ports are 18080-18092, away from make serve's 8080-8082. Every step prints what it
measured (build time, image size, start to READY) so the README's figures can be re-taken.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from deploy import ROOT
from deploy.k8s.check import render
from handlers import MODEL_NAME

DOCKERFILE = ROOT / "deploy" / "docker" / "Dockerfile"
IGNOREFILE = ROOT / "deploy" / "docker" / "Dockerfile.dockerignore"
CONTAINERS_CONF = ROOT / "deploy" / "docker" / "containers.conf"
WHEELHOUSE = ROOT / ".whl"
BASE_IMAGE = "localhost/artserve-base:bookworm"
# The laptop overlay's image (deploy/k8s/overlays/laptop/kustomization.yaml: artserve:cpu). podman resolves the
# short name to localhost/artserve:cpu, the image built here, so the rendered manifests need no image rewrite.
IMAGE = "localhost/artserve:cpu"
OVERLAY = "laptop"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
SYSTEM_CA = Path("/etc/ssl/certs/ca-certificates.crt")
# Executable -> Debian package; catatonit is the pause process of kube play's infra container.
TOOLS = {"podman": "podman", "runc": "runc", "debootstrap": "debootstrap", "catatonit": "catatonit"}
PROBE = ["python", "/home/model-server/model_ready.py"]
# Where the pod has an emptyDir (deploy/k8s/base/deployment.yaml); everything else is read-only.
POD_TMPFS = ["/tmp", "/home/model-server/logs"]


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


def dockerfile_pins() -> list[str]:
    """The ``name==version`` requirements of the Dockerfile's pip install (the ones pyproject.toml pins)."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    step = next(line for line in text.splitlines() if line.startswith("RUN") and "pip install" in line)
    return re.findall(r"\b[A-Za-z0-9_.-]+==[^\s\\]+", step.split("pip install", 1)[1])


def cmd_base(args: argparse.Namespace) -> None:
    ensure_tools()
    if image_exists(args.base) and not args.force:
        print(f"{args.base} exists (--force rebuilds it)")
        return
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="artserve-base-", dir="/var/tmp") as tmp:
        root = Path(tmp) / "rootfs"
        subprocess.run(["debootstrap", "--variant=minbase", args.suite, str(root), args.mirror], check=True)
        # apt's downloaded .debs and lists are not needed in the image (the Dockerfile runs apt-get update).
        for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for f in (root / cache).glob("*"):
                if f.is_file():
                    f.unlink()
        tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
        podman("import", "--change", "CMD=/bin/bash", "-", args.base, stdin=tar.stdout)
        if tar.wait() != 0:
            raise SystemExit("tar of the debootstrapped root failed")
    print(f"base {args.base}: {image_size_mb(args.base):.0f} MB in {time.monotonic() - start:.0f} s")


def cmd_wheels(args: argparse.Namespace) -> None:
    """pip download the pinned stack into .whl/ with this machine's pip configuration (a no-op when complete)."""
    WHEELHOUSE.mkdir(exist_ok=True)
    pins = dockerfile_pins()
    start = time.monotonic()
    # -qq: this machine's pip configuration names local index folders that lack most projects, one warning each.
    subprocess.run([sys.executable, "-m", "pip", "download", "-qq", "-d", str(WHEELHOUSE), *pins], check=True)
    size = sum(f.stat().st_size for f in WHEELHOUSE.glob("*.whl")) / 1e9
    print(f"wheelhouse {WHEELHOUSE}: {size:.1f} GB for {' '.join(pins)} in {time.monotonic() - start:.0f} s")


def cmd_build(args: argparse.Namespace) -> None:
    ensure_tools()
    build_args = [f"BASE={args.base}", f"CHECKPOINT={args.checkpoint}"]
    if args.ca_bundle:
        # The bundle must lie inside the build context; .whl/ is git-ignored and let through .dockerignore.
        WHEELHOUSE.mkdir(exist_ok=True)
        shutil.copyfile(args.ca_bundle, WHEELHOUSE / "ca-bundle.pem")
        build_args.append("CA_BUNDLE=.whl/ca-bundle.pem")
    cmd = ["build", "--network=host", "--ignorefile", str(IGNOREFILE), "-f", str(DOCKERFILE), "-t", args.image]
    for arg in build_args:
        cmd += ["--build-arg", arg]
    start = time.monotonic()
    podman(*cmd, str(ROOT))
    print(f"image {args.image}: {image_size_mb(args.image):.0f} MB, built in {time.monotonic() - start:.0f} s")


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


def cmd_check(args: argparse.Namespace) -> None:
    """Run the image as the pod would: user 10001, read-only root, tmpfs where the pod has an emptyDir."""
    ensure_tools()
    name = "artserve-check"
    podman("rm", "--force", "--ignore", name, check=False)
    run = ["run", "--detach", "--name", name, "--user", "10001:10001", "--read-only", "--read-only-tmpfs=false"]
    run += ["--cap-drop", "ALL", "--security-opt", "no-new-privileges"]
    for path in POD_TMPFS:
        run += ["--tmpfs", f"{path}:rw,nosuid,nodev,mode=1777"]
    run += ["-p", f"127.0.0.1:{args.port}:8080", "-p", f"127.0.0.1:{args.metrics_port}:8082"]
    started = time.monotonic()
    podman(*run, args.image)
    try:
        ready_s = wait_ready(name, args.timeout, started)
        print(f"container start to READY: {ready_s:.1f} s", flush=True)
        smoke(args.port, args.metrics_port)
    finally:
        stop_started = time.monotonic()
        podman("stop", "--time", "90", name, check=False)
        print(f"stopped in {time.monotonic() - stop_started:.1f} s")
        podman("logs", "--tail", "5", name, check=False)
        podman("rm", "--force", "--ignore", name, check=False)


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


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    base = sub.add_parser("base", help="debootstrap + podman import the local base image")
    base.add_argument("--base", default=BASE_IMAGE, help="image name (default: %(default)s)")
    base.add_argument("--suite", default="bookworm", help="Debian suite (default: %(default)s)")
    base.add_argument("--mirror", default=DEBIAN_MIRROR, help="Debian mirror (default: %(default)s)")
    base.add_argument("--force", action="store_true", help="rebuild even when the image exists (default: off)")
    base.set_defaults(func=cmd_base)
    sub.add_parser("wheels", help="fill .whl/ with the pinned stack").set_defaults(func=cmd_wheels)
    build = sub.add_parser("build", help="build the serving image")
    build.add_argument("--base", default=BASE_IMAGE, help="the Dockerfile's BASE (default: %(default)s)")
    build.add_argument("--image", default=IMAGE, help="tag (default: %(default)s)")
    build.add_argument(
        "--checkpoint", default="model_store/art-category.pt", help="checkpoint in the context (default: %(default)s)"
    )
    build.add_argument(
        "--ca-bundle",
        default=str(SYSTEM_CA) if SYSTEM_CA.exists() else "",
        help="PEM bundle pip trusts too, copied into .whl/ ('' for none; default: %(default)s)",
    )
    build.set_defaults(func=cmd_build)
    for name, func, port in (("check", cmd_check, 18080), ("play", cmd_play, 18090)):
        run = sub.add_parser(name, help="run the image" if name == "check" else "podman kube play the laptop overlay")
        if name == "check":  # play runs the image the overlay names (artserve:cpu, i.e. IMAGE)
            run.add_argument("--image", default=IMAGE, help="image (default: %(default)s)")
        run.add_argument("--port", type=int, default=port, help="host port for 8080 (default: %(default)s)")
        run.add_argument("--metrics-port", type=int, default=port + 2, help="host port for 8082 (default: %(default)s)")
        run.add_argument("--timeout", type=float, default=300, help="s to wait for READY (default: %(default)s)")
        run.set_defaults(func=func)
    return p


def main(argv: list[str] | None = None) -> None:
    args = get_args_parser().parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
