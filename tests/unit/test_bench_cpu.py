"""make bench's CPU accounting: where the cores' time went while measuring, by process role."""

from __future__ import annotations

import subprocess
import sys
import time

from loadtests.bench_measure import cpu_seconds, cpu_shares

# Burns 0.6 s of CPU once told to (a line on stdin), then sleeps.
BURN = (
    "import sys, time\nsys.stdin.readline()\nend = time.process_time() + 0.6\n"
    "while time.process_time() < end: pass\ntime.sleep(30)"
)


def test_cpu_shares_credit_a_busy_server_and_add_up():
    busy = subprocess.Popen([sys.executable, "-c", BURN], stdin=subprocess.PIPE, text=True)
    idle = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        time.sleep(0.5)  # both started; the interpreters' start-up is before the first snapshot
        before = cpu_seconds({"server": busy.pid, "sleeper": idle.pid})
        busy.stdin.write("go\n")
        busy.stdin.flush()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # until the burner has used its 0.6 s of CPU (a busy machine is slower)
            time.sleep(0.2)
            after = cpu_seconds({"server": busy.pid, "sleeper": idle.pid})
            if after["processes"][busy.pid][1] - before["processes"][busy.pid][1] >= 0.5:
                break
        shares = cpu_shares(before, after)
    finally:
        busy.kill()
        idle.kill()
    # >= 0.5 s of CPU within at most ~20 s of both cores' time (a loaded machine stretches the window)
    assert shares["server"] > 0.01, f"the burning process got no share: {shares}"
    assert shares["sleeper"] < shares["server"] / 5, f"a sleeping process was credited CPU: {shares}"
    assert {"client", "other", "idle"} <= set(shares), f"roles missing: {shares}"
    assert abs(sum(shares.values()) - 1.0) < 0.05, f"the shares of all cores' time should add up to 1: {shares}"


def test_worker_time_splits_the_window_by_the_handlers_counters():
    from loadtests.bench_measure import worker_time

    before = {"ArtserveHandlerMs": 1000.0, "ArtservePreprocessMs": 100.0, "ArtserveBatches": 10, "ArtserveImages": 40}
    after = {
        "ArtserveHandlerMs": 37000.0,
        "ArtservePreprocessMs": 2100.0,
        "ArtserveBatches": 110,
        "ArtserveImages": 420,
    }
    # 2 workers for 20 s = 40,000 worker-ms: 36,000 in the handler (2,000 decoding), 4,000 outside over 100 batches
    spent = worker_time(before, after, seconds=20.0, workers=2)
    assert spent == {
        "in_handler": 0.9,
        "decode": 0.05,
        "predict": 0.85,
        "outside_handler": 0.1,
        "mean_batch": 3.8,
        "outside_ms_per_batch": 40.0,
    }, spent
    assert worker_time(before, before, seconds=20.0, workers=1) == {}, "no batch in the window: nothing to split"
