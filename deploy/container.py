"""Build the serving image and run it, and the laptop overlay, in a real container engine (podman).

    python -m deploy.container base     # debootstrap a Debian bookworm root and import it (skipped when present)
    python -m deploy.container wheels   # fill .whl/ with the pinned stack from the local pip configuration
    python -m deploy.container build    # the serving image from deploy/docker/Dockerfile on that base
    python -m deploy.container check    # run it as the pod would, wait for READY, then `make smoke` against it
    python -m deploy.container play     # kubectl kustomize the laptop overlay | podman kube play; READY, smoke,
                                        # the preStop drain, kube down

The Makefile's image targets call these (deploy/k8s/README.md "Build and run it here"). podman runs with
``--runtime runc`` and deploy/docker/containers.conf (deploy/podman.py: no default ulimits), the two settings the
dev VM needs (issue 16); ``play`` is deploy/kube_play.py. Host ports are 18080-18092, away from make serve's
8080-8082. Every step prints what it measured (build time, image size, start to READY) so the figures can be re-taken.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from deploy import ROOT
from deploy.kube_play import cmd_play
from deploy.podman import IMAGE, ensure_tools, image_exists, image_size_mb, podman, smoke, wait_ready

DOCKERFILE = ROOT / "deploy" / "docker" / "Dockerfile"
IGNOREFILE = ROOT / "deploy" / "docker" / "Dockerfile.dockerignore"
WHEELHOUSE = ROOT / ".whl"
BASE_IMAGE = "localhost/artserve-base:bookworm"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
SYSTEM_CA = Path("/etc/ssl/certs/ca-certificates.crt")
# Where the pod has an emptyDir (deploy/k8s/base/deployment.yaml); everything else is read-only.
POD_TMPFS = ["/tmp", "/home/model-server/logs"]


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
