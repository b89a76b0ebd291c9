"""Write the Kubernetes copies of artserve's serving configuration from their sources of truth.

    python -m deploy.k8s.sync           # rewrite the copies
    python -m deploy.k8s.sync --check   # exit 1 and name the stale copies (tests/unit/test_k8s_sync.py runs this)

kustomize only reads files under its kustomization root, so the ConfigMap sources and the
PrometheusRule are generated copies, never edited by hand:

    deploy/config.properties     -> deploy/k8s/base/files/config.properties  (with the pod's ports and paths)
    deploy/metrics.yaml          -> deploy/k8s/base/files/metrics.yaml
    deploy/model-config.yaml     -> deploy/k8s/base/files/model-config.yaml
    deploy/prometheus/rules.yml  -> deploy/k8s/components/monitoring/prometheus-rule.yaml  (spec.groups)
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
HOME = "/home/model-server"

#: config.properties values that differ in the pod (paths of the image's layout; the same ports).
POD_PROPERTIES = {
    "inference_address": "http://0.0.0.0:8080",
    "management_address": "http://127.0.0.1:8081",
    "metrics_address": "http://0.0.0.0:8082",
    "model_store": f"{HOME}/model-store",
    "metrics_config": f"{HOME}/config/metrics.yaml",
    "load_models": "art-category.mar",
}

RULE_NAME = "artserve"


@dataclass(frozen=True)
class Copy:
    source: Path
    target: Path

    def render(self) -> str:
        label = self.source.relative_to(ROOT) if self.source.is_relative_to(ROOT) else self.source
        header = f"# GENERATED from {label} by `python -m deploy.k8s.sync`: edit the source.\n"
        text = self.source.read_text(encoding="utf-8")
        if self.target.name == "config.properties":
            return header + pod_properties(text)
        if self.target.name == "prometheus-rule.yaml":
            return header + prometheus_rule(text)
        return header + text


def pod_properties(text: str, overrides: dict[str, str] = POD_PROPERTIES) -> str:
    """``text`` (a config.properties) with ``overrides`` replacing values in place; missing keys appended."""
    lines, seen = [], set()
    for line in text.splitlines():
        key = line.split("=", 1)[0].strip()
        if "=" in line and not line.lstrip().startswith("#") and key in overrides:
            line = f"{key}={overrides[key]}"
            seen.add(key)
        lines.append(line)
    lines += [f"{key}={value}" for key, value in overrides.items() if key not in seen]
    return "\n".join(lines) + "\n"


def prometheus_rule(rules_yml: str) -> str:
    """A Prometheus Operator PrometheusRule carrying the groups of a Prometheus rules file unchanged."""
    groups = yaml.safe_load(rules_yml)["groups"]
    rule = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": RULE_NAME, "labels": {"app.kubernetes.io/name": "artserve"}},
        "spec": {"groups": groups},
    }
    return yaml.dump(rule, Dumper=_BlockDumper, sort_keys=False, width=1000)


class _BlockDumper(yaml.SafeDumper):
    """Writes multi-line strings (PromQL) as ``|`` blocks, as in the source file."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _str)


COPIES = (
    Copy(DEPLOY / "config.properties", K8S / "base" / "files" / "config.properties"),
    Copy(DEPLOY / "metrics.yaml", K8S / "base" / "files" / "metrics.yaml"),
    Copy(DEPLOY / "model-config.yaml", K8S / "base" / "files" / "model-config.yaml"),
    Copy(DEPLOY / "prometheus" / "rules.yml", K8S / "components" / "monitoring" / "prometheus-rule.yaml"),
)


def stale_copies(copies: tuple[Copy, ...] = COPIES) -> list[Copy]:
    """Copies whose file differs from what their source renders to now."""
    return [c for c in copies if not c.target.exists() or c.target.read_text(encoding="utf-8") != c.render()]


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--check", action="store_true", help="only report stale copies; exit 1 if any (default: write)")
    return p


def main(args: argparse.Namespace) -> int:
    missing = [c.source for c in COPIES if not c.source.exists()]
    if missing:
        print("missing sources: " + ", ".join(str(m.relative_to(ROOT)) for m in missing), file=sys.stderr)
        return 2
    stale = stale_copies()
    for copy in stale:
        if args.check:
            print(f"{copy.target.relative_to(ROOT)} is stale: run `python -m deploy.k8s.sync`", file=sys.stderr)
        else:
            copy.target.parent.mkdir(parents=True, exist_ok=True)
            copy.target.write_text(copy.render(), encoding="utf-8")
            print(f"wrote {copy.target.relative_to(ROOT)}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main(get_args_parser().parse_args()))
