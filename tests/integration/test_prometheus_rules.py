"""promtool checks of the checked-in Prometheus config and rules, and the rules' unit tests."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from deploy import ROOT

PROM_DIR = ROOT / "deploy" / "prometheus"


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    assert path, "promtool not found: run `make system-deps` (Debian package prometheus)"
    return path


@pytest.mark.parametrize(
    "args",
    [
        ("check", "config", "prometheus.yml"),
        ("check", "rules", "rules.yml"),
        ("test", "rules", "tests/rules_test.yml"),
    ],
    ids=["check-config", "check-rules", "test-rules"],
)
def test_promtool(promtool, args):
    proc = subprocess.run([promtool, *args], cwd=PROM_DIR, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"promtool {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"


def test_every_rule_has_a_unit_test():
    import yaml

    rules = yaml.safe_load((PROM_DIR / "rules.yml").read_text())["groups"]
    names = {rule.get("record") or rule.get("alert") for group in rules for rule in group["rules"]}
    tests = (PROM_DIR / "tests" / "rules_test.yml").read_text()
    untested = sorted(name for name in names if name not in tests)
    assert not untested, f"rules without a promtool unit test in deploy/prometheus/tests/rules_test.yml: {untested}"
