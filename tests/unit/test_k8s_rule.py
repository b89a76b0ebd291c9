"""The Kubernetes PrometheusRule carries deploy/prometheus/rules.yml's groups unchanged (make k8s-check)."""

from __future__ import annotations

import yaml

from deploy.k8s import check


def test_prometheus_rule_carries_the_rule_file_unchanged():
    errors = check.rule_copy_errors()
    assert not errors, "\n".join(errors)


def test_a_changed_group_is_reported(tmp_path):
    rules = yaml.safe_load(check.RULES.read_text(encoding="utf-8"))
    first = rules["groups"][0]
    first["rules"][0]["expr"] = "vector(1)"
    edited = tmp_path / "rules.yml"
    edited.write_text(yaml.safe_dump(rules), encoding="utf-8")
    errors = check.rule_copy_errors(edited, check.PROMETHEUS_RULE)
    assert errors and first["name"] in errors[0], f"an edited group {first['name']!r} was not reported: {errors}"
