"""Torch threads per worker: the setting, OMP_NUM_THREADS, or the CPU budget shared among the workers."""

from __future__ import annotations

import pytest

from handlers.threads import cgroup_cpu_limit, cpu_budget, torch_threads


def test_cpu_budget_is_the_affinity_capped_by_the_cgroup_quota(tmp_path):
    cpu_max = tmp_path / "cpu.max"
    cpu_max.write_text("250000 100000\n")  # a container limit of 2.5 CPUs
    assert cpu_budget(cpu_max, affinity=16) == 2, "2.5 CPUs of quota allow 2 busy threads"
    assert cpu_budget(cpu_max, affinity=1) == 1, "the affinity mask bounds it too"
    cpu_max.write_text("max 100000\n")
    assert cpu_budget(cpu_max, affinity=16) == 16, "no quota: the affinity mask"
    no_v1 = tmp_path / "no-v1"
    assert cpu_budget(tmp_path / "missing", affinity=4, v1_dir=no_v1) == 4, "no cgroup file at all: the affinity mask"
    cpu_max.write_text("50000 100000\n")
    assert cpu_budget(cpu_max, affinity=8) == 1, "half a CPU still gets one thread"
    assert cpu_budget() >= 1


def test_cgroup_v1_quota_counts_when_there_is_no_v2_file(tmp_path):
    v1 = tmp_path / "cpu"
    v1.mkdir()
    (v1 / "cpu.cfs_period_us").write_text("100000\n")
    (v1 / "cpu.cfs_quota_us").write_text("150000\n")  # podman --cpus 1.5 on a cgroup v1 host
    no_v2 = tmp_path / "cpu.max"
    assert cgroup_cpu_limit(no_v2, v1) == 1.5
    assert cpu_budget(no_v2, affinity=8, v1_dir=v1) == 1, "1.5 CPUs of v1 quota allow 1 busy thread"
    (v1 / "cpu.cfs_quota_us").write_text("-1\n")  # no limit
    assert cgroup_cpu_limit(no_v2, v1) is None and cpu_budget(no_v2, affinity=8, v1_dir=v1) == 8
    (v1 / "cpu.cfs_quota_us").write_text("400000\n")
    no_v2.write_text("max 100000\n")
    assert cpu_budget(no_v2, affinity=8, v1_dir=v1) == 8, "a v2 file says no quota: v1 files are not consulted"
    no_v2.write_text("200000 100000\n")
    assert cpu_budget(no_v2, affinity=8, v1_dir=v1) == 2, "v2 first"
    no_v2.write_text("200000 0\n")
    (v1 / "cpu.cfs_period_us").write_text("garbage\n")
    assert cgroup_cpu_limit(no_v2, v1) is None, "a zero period or unreadable numbers are no quota, not a crash"


def test_torch_threads_precedence_and_share():
    assert torch_threads({}, workers=2, env={}, budget=8) == (4, "8 CPUs / 2 workers")
    assert torch_threads({}, workers=3, env={}, budget=2) == (1, "2 CPUs / 3 workers"), "never below one"
    assert torch_threads({}, workers=0, env={}, budget=2)[0] == 2, "no worker count: one worker"
    assert torch_threads({}, workers=2, env={"OMP_NUM_THREADS": "3"}, budget=8) == (3, "OMP_NUM_THREADS")
    assert torch_threads({"torch_threads": 5}, workers=2, env={"OMP_NUM_THREADS": "3"}, budget=8) == (5, "set")
    env = {"ARTSERVE_TORCH_THREADS": "6", "OMP_NUM_THREADS": "3"}
    assert torch_threads({"torch_threads": 5}, workers=2, env=env, budget=8) == (6, "set"), "the env var wins"
    for bad in ("two", -1):
        with pytest.raises(ValueError, match="torch_threads"):
            torch_threads({"torch_threads": bad}, workers=1, env={}, budget=2)
