"""Torch threads per worker: the setting, OMP_NUM_THREADS, or the CPU budget shared among the workers."""

from __future__ import annotations

import pytest

from handlers.threads import cpu_budget, torch_threads


def test_cpu_budget_is_the_affinity_capped_by_the_cgroup_quota(tmp_path):
    cpu_max = tmp_path / "cpu.max"
    cpu_max.write_text("250000 100000\n")  # a container limit of 2.5 CPUs
    assert cpu_budget(cpu_max, affinity=16) == 2, "2.5 CPUs of quota allow 2 busy threads"
    assert cpu_budget(cpu_max, affinity=1) == 1, "the affinity mask bounds it too"
    cpu_max.write_text("max 100000\n")
    assert cpu_budget(cpu_max, affinity=16) == 16, "no quota: the affinity mask"
    assert cpu_budget(tmp_path / "missing", affinity=4) == 4, "no cgroup v2 file: the affinity mask"
    cpu_max.write_text("50000 100000\n")
    assert cpu_budget(cpu_max, affinity=8) == 1, "half a CPU still gets one thread"
    assert cpu_budget() >= 1


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
