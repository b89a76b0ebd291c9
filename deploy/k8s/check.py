"""Render every kustomize overlay and check it without a cluster.

    python -m deploy.k8s.check            # make k8s-check; tests/unit/test_k8s_manifests.py runs the same checks

For each overlay: ``kubectl kustomize`` renders it (no cluster is contacted); built-in objects must
pass ``kubernetes-validate --strict`` for each version in ``K8S_VERSIONS``; custom resources
(PodMonitor, PrometheusRule, ScaledObject) must have their required fields and point at the rendered
Deployment; and the policy holds: every container has requests, limits and a non-root, unprivileged
security context, serving containers have probes, and no Service or NetworkPolicy opens the management
(8081) or metrics (8082) port. Besides, the monitoring component's PrometheusRule must carry the groups
of deploy/prometheus/rules.yml unchanged.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import yaml

K8S = Path(__file__).resolve().parent
RULES = K8S.parent / "prometheus" / "rules.yml"
PROMETHEUS_RULE = K8S / "components" / "monitoring" / "prometheus-rule.yaml"
OVERLAYS = ("laptop", "gpu", "keda")
#: The oldest Kubernetes minor this targets (preStop sleep, matchLabelKeys) and the newest with schemas here.
K8S_VERSIONS = ("1.33", "1.37")
CUSTOM_GROUPS = ("monitoring.coreos.com", "keda.sh")
PRIVATE_PORTS = (8081, 8082)
WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet")


def render(overlay: str | Path) -> list[dict]:
    """``kubectl kustomize`` of an overlay (a name under overlays/ or a path), as a list of objects."""
    path = Path(overlay) if Path(overlay).is_dir() else K8S / "overlays" / str(overlay)
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        raise FileNotFoundError("kubectl (with its built-in kustomize, v1.27 or newer) is needed to render overlays")
    out = subprocess.run([kubectl, "kustomize", str(path)], capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        raise RuntimeError(f"kubectl kustomize {path} failed:\n{out.stderr}")
    return [obj for obj in yaml.safe_load_all(out.stdout) if obj]


def name(obj: dict) -> str:
    return f"{obj['kind']}/{obj['metadata']['name']}"


def is_custom(obj: dict) -> bool:
    return obj["apiVersion"].split("/")[0] in CUSTOM_GROUPS


def schema_errors(obj: dict, versions: tuple[str, ...] = K8S_VERSIONS) -> list[str]:
    """Strict schema validation of a built-in object; a missing schema is an error too."""
    errors = []
    for version in versions:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            path = ".".join(str(p) for p in e.path)
            errors.append(f"{name(obj)} fails Kubernetes {version} schema at {path}: {e.message}")
        except kubernetes_validate.SchemaNotFoundError as e:
            errors.append(f"{name(obj)}: {e.message}")
    return errors


def pod_templates(objects: list[dict]) -> list[tuple[dict, dict]]:
    return [(obj, obj["spec"]["template"]["spec"]) for obj in objects if obj["kind"] in WORKLOADS]


def _container_violations(where: str, pod: dict, container: dict, serving: bool) -> list[str]:
    out = []
    resources = container.get("resources", {})
    for kind in ("requests", "limits"):
        missing = {"cpu", "memory"} - set(resources.get(kind, {}))
        if missing:
            out.append(f"{where}: no {kind} for {sorted(missing)}")
    pod_sc, sc = pod.get("securityContext", {}), container.get("securityContext", {})
    if not sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot", False)):
        out.append(f"{where}: runAsNonRoot is not set: it may run as root")
    if sc.get("runAsUser", pod_sc.get("runAsUser")) == 0:
        out.append(f"{where}: runAsUser is 0 (root)")
    if sc.get("allowPrivilegeEscalation", True) is not False:
        out.append(f"{where}: allowPrivilegeEscalation is not false")
    if sc.get("privileged"):
        out.append(f"{where}: privileged")
    if "ALL" not in sc.get("capabilities", {}).get("drop", []):
        out.append(f"{where}: capabilities are not dropped (drop: [ALL])")
    if not sc.get("readOnlyRootFilesystem"):
        out.append(f"{where}: root filesystem is writable")
    if serving:
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            if probe not in container:
                out.append(f"{where}: no {probe}")
    return out


def _named_ports(objects: list[dict]) -> dict[str, int]:
    return {
        port["name"]: port["containerPort"]
        for _, pod in pod_templates(objects)
        for c in pod["containers"]
        for port in c.get("ports", [])
        if "name" in port
    }


def policy_violations(objects: list[dict]) -> list[str]:
    """Every breach of the deployment policy in a rendered overlay (empty when it holds)."""
    out = []
    for obj, pod in pod_templates(objects):
        for c in pod.get("initContainers", []):
            out += _container_violations(f"{name(obj)} init container {c['name']}", pod, c, serving=False)
        for c in pod["containers"]:
            out += _container_violations(f"{name(obj)} container {c['name']}", pod, c, serving=True)
    named = _named_ports(objects)
    for obj in objects:
        if obj["kind"] == "Service":
            for port in obj["spec"].get("ports", []):
                target = port.get("targetPort", port["port"])
                numbers = {port["port"], named.get(target, target)}
                if numbers & set(PRIVATE_PORTS):
                    out.append(f"{name(obj)} exposes port {sorted(numbers & set(PRIVATE_PORTS))}: keep it in the pod")
        if obj["kind"] == "NetworkPolicy":
            for rule in obj["spec"].get("ingress", []):
                for port in rule.get("ports", []):
                    if named.get(port.get("port"), port.get("port")) == 8081:
                        out.append(f"{name(obj)} admits traffic to the management port 8081")
    return out


def _deployment_labels(objects: list[dict]) -> dict[str, dict]:
    return {
        o["metadata"]["name"]: o["spec"]["template"]["metadata"]["labels"] for o in objects if o["kind"] in WORKLOADS
    }


def _podmonitor_errors(obj: dict, objects: list[dict]) -> list[str]:
    spec, out = obj.get("spec", {}), []
    selector = spec.get("selector", {}).get("matchLabels", {})
    if not selector or not any(selector.items() <= labels.items() for labels in _deployment_labels(objects).values()):
        out.append(f"{name(obj)}: spec.selector.matchLabels selects no rendered pod template")
    endpoints = spec.get("podMetricsEndpoints", [])
    if not endpoints:
        out.append(f"{name(obj)}: spec.podMetricsEndpoints is empty")
    named = _named_ports(objects)
    for endpoint in endpoints:
        if named.get(endpoint.get("port")) != 8082:
            out.append(f"{name(obj)}: endpoint port {endpoint.get('port')!r} is not the pods' metrics port 8082")
    return out


def _prometheusrule_errors(obj: dict) -> list[str]:
    groups, out = obj.get("spec", {}).get("groups", []), []
    if not groups:
        out.append(f"{name(obj)}: spec.groups is empty")
    for group in groups:
        if not group.get("name") or not group.get("rules"):
            out.append(f"{name(obj)}: group {group.get('name')!r} needs a name and rules")
        for rule in group.get("rules", []):
            kinds = [k for k in ("record", "alert") if k in rule]
            if len(kinds) != 1 or not str(rule.get("expr", "")).strip():
                out.append(f"{name(obj)}: rule {rule} needs an expr and exactly one of record/alert")
    return out


def _scaledobject_errors(obj: dict, objects: list[dict]) -> list[str]:
    spec, out = obj.get("spec", {}), []
    target = spec.get("scaleTargetRef", {}).get("name")
    if target not in _deployment_labels(objects):
        out.append(f"{name(obj)}: scaleTargetRef {target!r} is not a rendered Deployment")
    hpas = [
        o for o in objects if o["kind"] == "HorizontalPodAutoscaler" and o["spec"]["scaleTargetRef"]["name"] == target
    ]
    if hpas:
        out.append(f"{name(obj)}: {name(hpas[0])} also scales {target}; KEDA creates its own HPA")
    triggers = spec.get("triggers", [])
    if not triggers:
        out.append(f"{name(obj)}: spec.triggers is empty")
    for trigger in triggers:
        missing = {"serverAddress", "query", "threshold"} - set(trigger.get("metadata", {}))
        if trigger.get("type") != "prometheus" or missing:
            out.append(f"{name(obj)}: trigger needs type prometheus and metadata {sorted(missing)}")
    return out


def custom_resource_errors(objects: list[dict]) -> list[str]:
    """Required fields and cross-references of the custom resources in a rendered overlay."""
    out = []
    for obj in objects:
        if obj["kind"] == "PodMonitor":
            out += _podmonitor_errors(obj, objects)
        elif obj["kind"] == "PrometheusRule":
            out += _prometheusrule_errors(obj)
        elif obj["kind"] == "ScaledObject":
            out += _scaledobject_errors(obj, objects)
        elif is_custom(obj):
            out.append(f"{name(obj)}: no checks for this custom resource kind")
    return out


def rule_copy_errors(rules: Path = RULES, prometheus_rule: Path = PROMETHEUS_RULE) -> list[str]:
    """Empty when the PrometheusRule's ``spec.groups`` are the rule file's ``groups``, else what differs."""
    groups = yaml.safe_load(rules.read_text(encoding="utf-8"))["groups"]
    carried = yaml.safe_load(prometheus_rule.read_text(encoding="utf-8"))["spec"]["groups"]
    if carried == groups:
        return []
    source, copy = ({g["name"]: g for g in gs} for gs in (groups, carried))
    differing = sorted(n for n in source.keys() | copy.keys() if source.get(n) != copy.get(n)) or "(their order)"
    return [f"{prometheus_rule.name}: groups {differing} differ from {rules}; copy its groups into spec.groups"]


def check(overlay: str) -> list[str]:
    objects = render(overlay)
    errors = [e for obj in objects if not is_custom(obj) for e in schema_errors(obj)]
    return errors + custom_resource_errors(objects) + policy_violations(objects)


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("overlays", nargs="*", default=list(OVERLAYS), help="overlays to check (default: all)")
    return p


def main(args: argparse.Namespace) -> int:
    failed = 0
    for error in rule_copy_errors():
        print(error)
        failed += 1
    for overlay in args.overlays:
        errors = check(overlay)
        print(f"{overlay}: " + ("ok" if not errors else f"{len(errors)} problem(s)"))
        for error in errors:
            print(f"  {error}")
        failed += bool(errors)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(get_args_parser().parse_args()))
