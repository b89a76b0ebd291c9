"""The Kubernetes copies of the serving configuration match their sources (python -m deploy.k8s.sync)."""

from __future__ import annotations

import yaml

from deploy.k8s import sync
from deploy.k8s.sync import COPIES, POD_PROPERTIES, Copy, pod_properties, prometheus_rule, stale_copies


def test_every_copy_matches_its_source():
    missing = [str(c.source) for c in COPIES if not c.source.exists()]
    assert not missing, f"sources missing: {missing}"
    stale = [str(c.target.relative_to(sync.ROOT)) for c in stale_copies()]
    assert not stale, f"{stale} drifted from their sources: run `python -m deploy.k8s.sync` and commit"


def test_pod_properties_replace_values_in_place_and_keep_the_rest():
    source = "# comment\ninference_address=http://127.0.0.1:1\n# model_store=commented\njob_queue_size=64\n"
    out = pod_properties(source, {"inference_address": "http://0.0.0.0:8080", "model_store": "/store"})
    assert out.splitlines() == [
        "# comment",
        "inference_address=http://0.0.0.0:8080",
        "# model_store=commented",
        "job_queue_size=64",
        "model_store=/store",
    ], f"unexpected rewrite:\n{out}"


def test_pod_properties_bind_what_the_pod_needs():
    text = (sync.K8S / "base" / "files" / "config.properties").read_text(encoding="utf-8")
    for key, value in POD_PROPERTIES.items():
        assert f"\n{key}={value}\n" in text, f"the pod's config.properties does not set {key}={value}"


def test_prometheus_rule_carries_the_groups_unchanged():
    rules = "groups:\n  - name: g\n    rules:\n      - record: a:b\n        expr: sum(rate(x[1m]))\n"
    rule = yaml.safe_load(prometheus_rule(rules))
    assert rule["kind"] == "PrometheusRule", f"kind is {rule['kind']}"
    assert rule["spec"]["groups"] == yaml.safe_load(rules)["groups"], f"groups changed: {rule['spec']['groups']}"


def test_a_changed_source_is_reported_stale(tmp_path):
    source, target = tmp_path / "metrics.yaml", tmp_path / "copy" / "metrics.yaml"
    source.write_text("a: 1\n", encoding="utf-8")
    copy = Copy(source, target)
    assert stale_copies((copy,)) == [copy], "a missing copy is not reported"
    target.parent.mkdir()
    target.write_text(copy.render(), encoding="utf-8")
    assert stale_copies((copy,)) == [], "a fresh copy is reported stale"
    source.write_text("a: 2\n", encoding="utf-8")
    assert stale_copies((copy,)) == [copy], "an edited source is not reported"
