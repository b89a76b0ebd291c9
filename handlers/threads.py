"""How many torch threads a model worker uses: its share of the CPUs it may run on.

torch starts one intra-op thread per core it sees, in every worker process, and it sees the node's cores, not a
container's CPU limit. Two workers on two cores then run four threads that stall each other, and a pod limited to
2 CPUs on a 64-core node runs 64. ``torch_threads`` gives each worker its share instead.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path

import torch

CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")
CGROUP_V1_CPU = Path("/sys/fs/cgroup/cpu")


def cgroup_cpu_limit(cpu_max: Path = CGROUP_CPU_MAX, v1_dir: Path = CGROUP_V1_CPU) -> float | None:
    """The CPU quota of this process's cgroup, in CPUs, as a container's CPU limit sets it: cgroup v2's
    ``cpu.max`` ("max ..." = none), else cgroup v1's ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` (-1 = none;
    nodes and container engines still run v1). None when there is no quota or neither can be read."""
    try:
        quota, period = cpu_max.read_text(encoding="ascii").split()[:2]
        return None if quota == "max" else _ratio(int(quota), int(period))
    except (OSError, ValueError):
        pass
    try:
        quota = int((v1_dir / "cpu.cfs_quota_us").read_text(encoding="ascii"))
        return _ratio(quota, int((v1_dir / "cpu.cfs_period_us").read_text(encoding="ascii")))
    except (OSError, ValueError):
        return None


def _ratio(quota: int, period: int) -> float | None:
    return quota / period if quota > 0 and period > 0 else None


def cpu_budget(cpu_max: Path = CGROUP_CPU_MAX, affinity: int | None = None, v1_dir: Path = CGROUP_V1_CPU) -> int:
    """The CPUs this process may use: its CPU affinity, capped by its cgroup's CPU quota
    (:func:`cgroup_cpu_limit`) rounded down; at least 1."""
    cpus = affinity if affinity is not None else len(os.sched_getaffinity(0))
    limit = cgroup_cpu_limit(cpu_max, v1_dir)
    if limit is not None:
        cpus = min(cpus, math.floor(limit))
    return max(1, cpus)


def count_setting(config: Mapping, key: str, env_var: str, env: Mapping[str, str], zero_means: str) -> int:
    """A thread count from ``env_var``, else the ``handler:`` setting ``key``; 0 (``zero_means``) when unset."""
    raw = env.get(env_var) or config.get(key) or 0
    try:
        count = int(raw)
    except ValueError:
        raise ValueError(f"{key}={raw!r} is not an integer") from None
    if count < 0:
        raise ValueError(f"{key}={raw!r} must be 0 ({zero_means}) or positive")
    return count


def torch_threads(
    config: Mapping, workers: int, env: Mapping[str, str] = os.environ, budget: int | None = None
) -> tuple[int, str]:
    """(threads, why) for one worker: ``ARTSERVE_TORCH_THREADS``, else the ``handler:`` setting ``torch_threads``;
    0 or unset = ``OMP_NUM_THREADS`` when the environment sets it, else the budget divided among the model's
    ``workers`` (at least 1). The budget (default) is :func:`cpu_budget`, at most torch's own default (one thread
    per physical core: hyper-threads do not speed up its kernels)."""
    threads = count_setting(config, "torch_threads", "ARTSERVE_TORCH_THREADS", env, "a share of the CPUs")
    if threads:
        return threads, "set"
    if env.get("OMP_NUM_THREADS", "").strip().isdigit() and int(env["OMP_NUM_THREADS"]) > 0:
        return int(env["OMP_NUM_THREADS"]), "OMP_NUM_THREADS"
    budget = min(cpu_budget(), torch.get_num_threads()) if budget is None else budget
    workers = max(1, workers)
    return max(1, budget // workers), f"{budget} CPUs / {workers} workers"
