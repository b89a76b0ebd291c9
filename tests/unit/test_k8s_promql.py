"""The autoscaling queries compute what the HPA expects, checked by promtool on synthetic counters."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml

from deploy.k8s import check

pytestmark = pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian: prometheus) not installed")

# Pod a: 2 requests/s that waited 60 000 us/s in total -> 30 ms each. Pod b: up but idle -> 0, not NaN.
SERIES = [
    {"series": 'ts_queue_latency_microseconds{namespace="artserve",pod="a"}', "values": "0+900000x20"},
    {"series": 'ts_inference_requests_total{namespace="artserve",pod="a"}', "values": "0+30x20"},
    {"series": 'ts_queue_latency_microseconds{namespace="artserve",pod="b"}', "values": "500+0x20"},
    {"series": 'ts_inference_requests_total{namespace="artserve",pod="b"}', "values": "7+0x20"},
]
EXPECTED = {
    "artserve_queue_time_ms": {"a": 30, "b": 0},
    "artserve_requests_per_second": {"a": 2, "b": 0},
}


def adapter_query(rule: dict) -> str:
    """The rule's metricsQuery as prometheus-adapter expands it for the pods a and b."""
    query = rule["metricsQuery"].replace("<<.GroupBy>>", "pod")
    return query.replace("<<.LabelMatchers>>", 'namespace="artserve",pod=~"a|b"')


def run_promtool(tmp_path, tests: list[dict]) -> subprocess.CompletedProcess:
    (tmp_path / "rules.yml").write_text("groups: []\n", encoding="utf-8")
    suite = {"rule_files": ["rules.yml"], "evaluation_interval": "15s", "tests": tests}
    (tmp_path / "test.yml").write_text(yaml.safe_dump(suite, sort_keys=False), encoding="utf-8")
    return subprocess.run(
        ["promtool", "test", "rules", "test.yml"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )


def test_adapter_rules_give_per_pod_values(tmp_path):
    values = yaml.safe_load((check.K8S / "prometheus-adapter" / "values.yaml").read_text(encoding="utf-8"))
    rules = {rule["name"]["as"]: rule for rule in values["rules"]["custom"]}
    assert rules.keys() == EXPECTED.keys(), f"adapter rules {sorted(rules)} differ from the tested ones"
    tests = [
        {
            "interval": "15s",
            "input_series": SERIES,
            "promql_expr_test": [
                {
                    "expr": adapter_query(rules[metric]),
                    "eval_time": "4m",
                    "exp_samples": [{"labels": f'{{pod="{pod}"}}', "value": value} for pod, value in expected.items()],
                }
            ],
        }
        for metric, expected in EXPECTED.items()
    ]
    out = run_promtool(tmp_path, tests)
    assert out.returncode == 0, f"promtool:\n{out.stdout}{out.stderr}"


def test_keda_queries_give_the_namespace_values(tmp_path):
    (scaled,) = [o for o in check.render("keda") if o["kind"] == "ScaledObject"]
    queries = {t["metricType"]: t["metadata"]["query"] for t in scaled["spec"]["triggers"]}
    expected = {"Value": 30, "AverageValue": 2}  # mean queue ms of all requests; total requests/s
    tests = [
        {
            "interval": "15s",
            "input_series": SERIES,
            "promql_expr_test": [
                {"expr": queries[kind], "eval_time": "4m", "exp_samples": [{"labels": "{}", "value": value}]}
            ],
        }
        for kind, value in expected.items()
    ]
    out = run_promtool(tmp_path, tests)
    assert out.returncode == 0, f"promtool:\n{out.stdout}{out.stderr}"
