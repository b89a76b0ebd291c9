"""A local Prometheus (Debian's /usr/bin/prometheus) scraping TorchServe with artserve's rules.

    python -m deploy.prometheus.local --target 127.0.0.1:8082 --port 9090   # `make monitor`

Writes a scrape config (job ``artserve``) into its run folder, loads deploy/prometheus/rules.yml, keeps
its data in the run folder, and listens on loopback only. Tests use :func:`start_prometheus`.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import time
from pathlib import Path

import requests

HERE = Path(__file__).resolve().parent
RULES = HERE / "rules.yml"
INSTALL_HINT = (
    "Prometheus is not installed: `make system-deps` (Debian package prometheus) or apt-get install prometheus"
)


def render_config(path: Path, targets: list[str], interval: str = "5s") -> Path:
    """A prometheus.yml scraping ``targets`` (host:port of TorchServe's metrics API) every ``interval``."""
    quoted = ", ".join(f'"{t}"' for t in targets)
    path.write_text(
        f"global:\n  scrape_interval: {interval}\n  evaluation_interval: {interval}\n"
        f"rule_files:\n  - {RULES}\n"
        f"scrape_configs:\n  - job_name: artserve\n    static_configs:\n      - targets: [{quoted}]\n",
        encoding="utf-8",
    )
    return path


class LocalPrometheus:
    def __init__(self, proc: subprocess.Popen, port: int, run_dir: Path) -> None:
        self.proc, self.port, self.run_dir = proc, port, run_dir

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, lines: int = 30) -> str:
        log = self.run_dir / "prometheus.log"
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) if log.exists() else ""

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prometheus exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if requests.get(f"{self.url}/-/ready", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.25)
        raise TimeoutError(f"prometheus not ready after {timeout:.0f} s:\n{self.log_tail()}")

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def prometheus_binary() -> str:
    binary = shutil.which("prometheus")
    if not binary:
        raise FileNotFoundError(INSTALL_HINT)
    return binary


def start_prometheus(run_dir: Path, targets: list[str], port: int, interval: str = "5s") -> LocalPrometheus:
    """Start Prometheus on 127.0.0.1:``port`` with its config and TSDB in ``run_dir``; returns at once."""
    run_dir = Path(run_dir).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    config = render_config(run_dir / "prometheus.yml", targets, interval)
    command = [
        prometheus_binary(),
        f"--config.file={config}",
        f"--storage.tsdb.path={run_dir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--storage.tsdb.retention.time=2d",
    ]
    with open(run_dir / "prometheus.log", "ab") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    return LocalPrometheus(proc, port, run_dir)


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--target", action="append", help="TorchServe metrics host:port, repeatable (default: 127.0.0.1:8082)"
    )
    p.add_argument("--port", type=int, default=9090, help="Prometheus listens on 127.0.0.1:PORT (default: %(default)s)")
    p.add_argument("--interval", default="5s", help="scrape and rule evaluation interval (default: %(default)s)")
    p.add_argument("--run-dir", default=".monitor", help="config, data and log (default: %(default)s)")
    return p


def main(args: argparse.Namespace) -> None:
    prom = start_prometheus(Path(args.run_dir), args.target or ["127.0.0.1:8082"], args.port, args.interval)
    try:
        prom.wait_ready()
        print(f"Prometheus at {prom.url} scraping {args.target or ['127.0.0.1:8082']} every {args.interval}")
        print(f"  targets: {prom.url}/targets   rules: {prom.url}/rules   alerts: {prom.url}/alerts")
        print(f"  try:     {prom.url}/graph?g0.expr=model:artserve_inference_latency_ms:avg_rate1m")
        print(f"  load test with it: make loadtest PROMETHEUS_URL={prom.url}")
        print("Ctrl-C stops it.")
        prom.proc.wait()
    except KeyboardInterrupt:
        pass
    finally:
        prom.stop()


if __name__ == "__main__":
    main(get_args_parser().parse_args())
