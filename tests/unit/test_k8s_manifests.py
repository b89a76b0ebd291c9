"""The kustomize overlays render, validate strictly, and follow the deployment policy (no cluster needed)."""

from __future__ import annotations

import copy
import posixpath
import shutil

import pytest
import yaml

from deploy.archive import BATCHING, DEFAULT_MODEL_CONFIG, batching_overrides
from deploy.docker import model_ready
from deploy.k8s import check
from deploy.k8s.check import OVERLAYS, custom_resource_errors, policy_violations, render, schema_errors

pytestmark = pytest.mark.skipif(
    shutil.which("kubectl") is None, reason="kubectl (with kustomize) is not installed: overlays cannot be rendered"
)


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict]]:
    return {overlay: render(overlay) for overlay in OVERLAYS}


def one(objects: list[dict], kind: str) -> dict:
    found = [o for o in objects if o["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, rendered {[o['metadata']['name'] for o in found]}"
    return found[0]


def parse_properties(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if "=" in line and not line.lstrip().startswith("#"))
    return {key.strip(): value.strip() for key, value in pairs}


def serving_container(objects: list[dict]) -> dict:
    return next(
        c for c in one(objects, "Deployment")["spec"]["template"]["spec"]["containers"] if c["name"] == "torchserve"
    )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_builtin_objects_pass_strict_schema(rendered, overlay):
    builtin = [o for o in rendered[overlay] if not check.is_custom(o)]
    kinds = {o["kind"] for o in builtin}
    assert {"Deployment", "Service", "ConfigMap", "PodDisruptionBudget", "NetworkPolicy"} <= kinds, (
        f"{overlay} lacks core objects: rendered {sorted(kinds)}"
    )
    errors = [e for o in builtin for e in schema_errors(o)]
    assert not errors, f"{overlay}: " + "\n".join(errors)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_custom_resources_have_required_fields(rendered, overlay):
    errors = custom_resource_errors(rendered[overlay])
    assert not errors, f"{overlay}: " + "\n".join(errors)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_policy_holds(rendered, overlay):
    violations = policy_violations(rendered[overlay])
    assert not violations, f"{overlay}: " + "\n".join(violations)


def _mutations() -> dict[str, tuple]:
    def container(objs):
        return serving_container(objs)

    def drop_limits(objs):
        del container(objs)["resources"]["limits"]

    def drop_probe(objs):
        del container(objs)["readinessProbe"]

    def run_as_root(objs):
        container(objs)["securityContext"]["runAsUser"] = 0

    def not_non_root(objs):
        container(objs)["securityContext"].pop("runAsNonRoot")
        one(objs, "Deployment")["spec"]["template"]["spec"]["securityContext"].pop("runAsNonRoot")

    def escalate(objs):
        container(objs)["securityContext"]["allowPrivilegeEscalation"] = True

    def expose_management(objs):
        one(objs, "Service")["spec"]["ports"].append({"name": "mgmt", "port": 8081})

    def expose_metrics_by_name(objs):
        one(objs, "Service")["spec"]["ports"].append({"name": "m", "port": 9100, "targetPort": "metrics"})

    return {
        "limits": (drop_limits, "no limits"),
        "probe": (drop_probe, "no readinessProbe"),
        "root": (run_as_root, "runAsUser is 0"),
        "runAsNonRoot": (not_non_root, "runAsNonRoot is not set"),
        "escalation": (escalate, "allowPrivilegeEscalation"),
        "8081": (expose_management, "exposes port [8081]"),
        "8082": (expose_metrics_by_name, "exposes port [8082]"),
    }


@pytest.mark.parametrize("case", sorted(_mutations()))
def test_policy_catches_each_breach(rendered, case):
    mutate, expected = _mutations()[case]
    objects = copy.deepcopy(rendered["gpu"])
    mutate(objects)
    violations = policy_violations(objects)
    assert any(expected in v for v in violations), f"breach {case!r} not reported; got {violations}"


def test_strict_schema_rejects_unknown_fields(rendered):
    deployment = copy.deepcopy(one(rendered["gpu"], "Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["gpus"] = 1
    assert schema_errors(deployment), "an unknown container field passed strict validation"


def test_gpu_overlay_requests_a_gpu_and_ready_based_probes(rendered):
    objects = rendered["gpu"]
    c = serving_container(objects)
    assert c["resources"]["limits"].get("nvidia.com/gpu") == "1", f"no GPU limit: {c['resources']}"
    for probe in ("startupProbe", "readinessProbe"):
        command = c[probe].get("exec", {}).get("command", [])
        assert any(arg.endswith("model_ready.py") for arg in command), f"{probe} is not the READY check: {c[probe]}"
    assert c["livenessProbe"]["httpGet"]["path"] == "/ping", f"liveness: {c['livenessProbe']}"
    cpu = serving_container(rendered["laptop"])
    assert "nvidia.com/gpu" not in cpu["resources"]["limits"], "the laptop overlay asks for a GPU"


def init_env(objects: list[dict]) -> dict[str, str]:
    spec = one(objects, "Deployment")["spec"]["template"]["spec"]
    init = next(c for c in spec["initContainers"] if c["name"] == "build-archive")
    return {e["name"]: e["value"] for e in init.get("env", [])}


def test_gpu_overlay_batches_its_own_way_and_cpu_pods_take_the_checked_in_file(rendered):
    known = {env for _, env, _ in BATCHING}
    gpu = init_env(rendered["gpu"])
    assert {"ARTSERVE_BATCH_SIZE", "ARTSERVE_MAX_BATCH_DELAY"} <= set(gpu), f"GPU archive step env: {gpu}"
    assert gpu.get("ARTSERVE_WORKERS") == "1", f"a GPU pod keeps one worker on its GPU: {gpu}"
    assert set(gpu) <= known, f"variables deploy.archive does not read: {set(gpu) - known}"
    overrides = batching_overrides(*(int(gpu[env]) if env in gpu else None for _, env, _ in BATCHING))
    checked_in = yaml.safe_load(DEFAULT_MODEL_CONFIG.read_text())
    assert any(checked_in[k] != v for k, v in overrides.items()), f"the GPU overlay repeats the CPU file: {gpu}"
    assert init_env(rendered["keda"]) == gpu, "the KEDA overlay (GPU pods) batches like the GPU overlay"
    assert not known & set(init_env(rendered["laptop"])), "laptop (CPU) pods must use model-config.yaml as it is"


def test_service_exposes_only_inference(rendered):
    for overlay, objects in rendered.items():
        service = one(objects, "Service")
        targets = [p.get("targetPort") for p in service["spec"]["ports"]]
        assert targets == ["http"], f"{overlay}: Service targets {targets}, expected only the inference port"
        ports = {p["name"]: p["containerPort"] for p in serving_container(objects)["ports"]}
        assert ports["http"] == 8080, f"{overlay}: named port http is {ports['http']}"


def test_hpa_scales_on_queue_time_with_behaviour(rendered):
    for overlay in ("laptop", "gpu"):
        hpa = one(rendered[overlay], "HorizontalPodAutoscaler")
        assert hpa["apiVersion"] == "autoscaling/v2", f"{overlay}: {hpa['apiVersion']}"
        metrics = {m["pods"]["metric"]["name"]: m for m in hpa["spec"]["metrics"] if m["type"] == "Pods"}
        assert "artserve_queue_time_ms" in metrics, f"{overlay}: no queue-time Pods metric in {hpa['spec']['metrics']}"
        behaviour = hpa["spec"]["behavior"]
        assert behaviour["scaleDown"]["stabilizationWindowSeconds"] >= 120, f"{overlay}: scale-down would flap"
        assert hpa["spec"]["scaleTargetRef"]["name"] == one(rendered[overlay], "Deployment")["metadata"]["name"], (
            f"{overlay}: the HPA scales {hpa['spec']['scaleTargetRef']}, not the Deployment"
        )


def test_adapter_serves_every_hpa_metric(rendered):
    values = yaml.safe_load((check.K8S / "prometheus-adapter" / "values.yaml").read_text(encoding="utf-8"))
    served = {rule["name"]["as"]: rule for rule in values["rules"]["custom"]}
    for overlay in ("laptop", "gpu"):
        wanted = {
            m["pods"]["metric"]["name"] for m in one(rendered[overlay], "HorizontalPodAutoscaler")["spec"]["metrics"]
        }
        assert wanted <= served.keys(), f"{overlay}: HPA metrics {wanted - served.keys()} have no adapter rule"
    queue = served["artserve_queue_time_ms"]["metricsQuery"]
    for counter in ("rate(ts_queue_latency_microseconds", "rate(ts_inference_requests_total"):
        assert counter in queue, f"queue-time rule is not a ratio of rates ({counter} missing): {queue}"


def test_keda_overlay_replaces_the_hpa_with_the_same_rules(rendered):
    keda, gpu = rendered["keda"], rendered["gpu"]
    assert not [o for o in keda if o["kind"] == "HorizontalPodAutoscaler"], "keda overlay still ships our HPA"
    scaled, hpa = one(keda, "ScaledObject")["spec"], one(gpu, "HorizontalPodAutoscaler")["spec"]
    assert scaled["advanced"]["horizontalPodAutoscalerConfig"]["behavior"] == hpa["behavior"], "behaviour differs"
    assert (scaled["minReplicaCount"], scaled["maxReplicaCount"]) == (hpa["minReplicas"], hpa["maxReplicas"]), (
        "KEDA replica bounds differ from the HPA's"
    )
    thresholds = sorted(float(t["metadata"]["threshold"]) for t in scaled["triggers"])
    targets = sorted(float(m["pods"]["target"]["averageValue"]) for m in hpa["metrics"])
    assert thresholds == targets, f"KEDA thresholds {thresholds} differ from the HPA targets {targets}"


def test_pod_configuration_binds_and_paths(rendered):
    for overlay, objects in rendered.items():
        config_map = one(objects, "ConfigMap")
        props = parse_properties(config_map["data"]["config.properties"])
        assert props["management_address"] == "http://127.0.0.1:8081", f"{overlay}: management leaves the pod"
        assert props["inference_address"] == "http://0.0.0.0:8080", f"{overlay}: {props['inference_address']}"
        assert props["metrics_address"] == "http://0.0.0.0:8082", f"{overlay}: {props['metrics_address']}"
        container = serving_container(objects)
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        # TorchServe resolves the relative paths against its working directory.
        store, metrics = (posixpath.join(container["workingDir"], props[k]) for k in ("model_store", "metrics_config"))
        assert store == mounts["model-store"], f"{overlay}: model_store is not the mounted store"
        assert metrics.startswith(mounts["config"] + "/"), f"{overlay}: metrics_config not mounted"
        assert mounts["model-store"] in props["allowed_urls"], f"{overlay}: allowed_urls names another store"


def test_termination_drains_longer_than_a_request_can_take(rendered):
    timeout = yaml.safe_load(DEFAULT_MODEL_CONFIG.read_text(encoding="utf-8"))["responseTimeout"]
    for overlay, objects in rendered.items():
        pod = one(objects, "Deployment")["spec"]["template"]["spec"]
        command = serving_container(objects)["lifecycle"]["preStop"]["exec"]["command"]
        assert command[:3] == ["python", "/home/model-server/model_ready.py", "--drain"], f"preStop: {command}"
        drain = model_ready.get_args_parser().parse_args(command[2:])
        assert drain.max_wait >= drain.settle + timeout, (
            f"{overlay}: drain gives up after {drain.max_wait} s, before a request accepted during the "
            f"{drain.settle} s settle could finish (responseTimeout {timeout} s)"
        )
        grace = pod["terminationGracePeriodSeconds"]
        assert grace >= drain.max_wait + 10, f"{overlay}: grace {grace} s leaves TorchServe no time after the drain"
