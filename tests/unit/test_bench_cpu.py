"""make bench's CPU accounting: where the cores' time went while measuring, by process role."""

from __future__ import annotations

import subprocess
import sys
import time

from loadtests.bench import cpu_seconds, cpu_shares

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
    assert shares["server"] > 0.05, f"the burning process got no share: {shares}"
    assert shares["sleeper"] < shares["server"] / 5, f"a sleeping process was credited CPU: {shares}"
    assert {"client", "other", "idle"} <= set(shares), f"roles missing: {shares}"
    assert abs(sum(shares.values()) - 1.0) < 0.05, f"the shares of all cores' time should add up to 1: {shares}"
