"""Each Kubernetes overlay's memory limit covers the worst case that its decode budget allows (docs/reliability.md,
"Decode budgets and memory limits"): the frontend at its heap cap, and per worker its model, one decode child per
decode thread and ``decode_memory_mb`` of decodes in flight."""

from __future__ import annotations

import shutil

import pytest
import yaml

from deploy.k8s.check import OVERLAYS, render

pytestmark = pytest.mark.skipif(
    shutil.which("kubectl") is None, reason="kubectl (with kustomize) is not installed: overlays cannot be rendered"
)

GIB = 2**30
FRONTEND = 1.25 * GIB  # -Xmx1g plus the JVM's own (RSS measured 0.23 GiB)
MODEL = {"cpu": 1.0 * GIB, "gpu": 3.0 * GIB}  # the worker's RSS: measured on a CPU; assumed with CUDA
CHILD = 0.05 * GIB  # a decode child's private memory (19-26 MiB measured)
UNITS = {"Gi": GIB, "Mi": 2**20, "G": 1e9, "M": 1e6}


def quantity(text: str) -> float:
    unit = next((u for u in UNITS if str(text).endswith(u)), "")
    return float(str(text).removesuffix(unit)) * UNITS.get(unit, 1)


def env_of(container: dict) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container.get("env", [])}


def worst_case(objects: list[dict]) -> tuple[float, float, str]:
    """(worst case, memory limit, how) of the overlay's serving container."""
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    serving = next(c for c in pod["containers"] if c["name"] == "torchserve")
    archive_env = env_of(next(c for c in pod["initContainers"] if c["name"] == "build-archive"))
    config_map = next(o for o in objects if o["kind"] == "ConfigMap" and "model-config.yaml" in o.get("data", {}))
    model_config = yaml.safe_load(config_map["data"]["model-config.yaml"])
    handler = model_config["handler"]
    workers = int(archive_env.get("ARTSERVE_WORKERS") or model_config["maxWorkers"])
    cpus = quantity(serving["resources"]["limits"]["cpu"])
    threads = int(handler.get("decode_threads") or max(1, int(cpus) // workers))
    budget = float(env_of(serving).get("ARTSERVE_DECODE_MEMORY_MB") or handler["decode_memory_mb"]) * 2**20
    model = MODEL["gpu" if "nvidia.com/gpu" in serving["resources"]["limits"] else "cpu"]
    worst = FRONTEND + workers * (model + threads * CHILD + budget)
    how = f"{workers} workers x ({model / GIB:g} + {threads} x {CHILD / GIB:g} + {budget / GIB:g}) GiB + frontend"
    return worst, quantity(serving["resources"]["limits"]["memory"]), how


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_memory_limit_covers_the_decode_budget(overlay):
    worst, limit, how = worst_case(render(overlay))
    assert limit >= worst, f"{overlay}: limit {limit / GIB:g} GiB < worst case {worst / GIB:.2f} GiB ({how})"
