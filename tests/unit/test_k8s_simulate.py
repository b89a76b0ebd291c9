"""The capacity simulation follows Kubernetes' HPA rules (pkg/controller/podautoscaler)."""

from __future__ import annotations

import numpy as np
import yaml

from deploy.k8s import simulate
from deploy.k8s.hpa import (
    QUEUE_METRIC,
    RATE_METRIC,
    Autoscaler,
    HpaSpec,
    Policy,
    Rules,
    metric_replicas,
    quantity,
    scale_down_limit,
    scale_up_limit,
)

UP = Rules(0, "Max", (Policy("Percent", 100, 60), Policy("Pods", 4, 60)))
DOWN = Rules(300, "Max", (Policy("Percent", 20, 60), Policy("Pods", 1, 60)))


def test_metric_replicas_ratio_and_tolerance():
    assert metric_replicas(4, [150.0] * 4, 0, 100.0) == 6, "ceil(4 * 150/100) should be 6"
    assert metric_replicas(4, [108.0] * 4, 0, 100.0) == 4, "within the 10 % tolerance nothing changes"
    assert metric_replicas(4, [20.0] * 4, 0, 100.0) == 1, "ceil(4 * 0.2) should be 1"
    assert metric_replicas(4, [], 4, 100.0) == 4, "no metrics at all keeps the scale"


def test_missing_pods_damp_in_both_directions():
    # Scale up: 2 pods at 200 and 2 starting pods counted as 0 -> mean 100 -> within tolerance.
    assert metric_replicas(4, [200.0, 200.0], 2, 100.0) == 4, "starting pods must count as 0 when scaling up"
    # Scale down: 2 pods at 10 and 2 missing counted at target -> mean 55 -> ceil(4 * 0.55) = 3.
    assert metric_replicas(4, [10.0, 10.0], 2, 100.0) == 3, "missing pods must count as at target when scaling down"


def test_rate_limits_follow_the_policies():
    assert scale_up_limit(3, 100.0, [], [], UP) == 7, "max(100 % of 3, 3 + 4) should allow 7"
    assert scale_up_limit(10, 100.0, [], [], UP) == 20, "100 % of 10 beats +4"
    assert scale_up_limit(6, 100.0, [(70.0, 3)], [], UP) == 7, "pods added in the last period count"
    assert scale_down_limit(10, 100.0, [], [], DOWN) == 8, "20 % of 10 removes 2"
    assert scale_down_limit(3, 100.0, [], [], DOWN) == 2, "1 pod beats int(3 * 0.8) = 2; equal here"


def test_scale_down_waits_for_the_stabilization_window():
    hpa = Autoscaler(HpaSpec(1, 20, {QUEUE_METRIC: 100.0}, UP, DOWN))
    replicas, history = 10, []
    for now in range(0, 600, 15):
        replicas = hpa.step(float(now), replicas, {QUEUE_METRIC: [10.0] * replicas}, 0)
        history.append((now, replicas))
    first_drop = next(now for now, r in history if r < 10)
    assert first_drop >= 300, f"scaled down at {first_drop} s, inside the 300 s window"
    assert history[-1][1] < 10, f"never scaled down: {history}"


def test_manifest_is_read_with_quantities():
    hpa = yaml.safe_load((simulate.K8S / "base" / "hpa.yaml").read_text(encoding="utf-8"))
    spec = HpaSpec.from_manifest(hpa)
    assert quantity("3500m") == 3.5 and quantity("100") == 100.0, "quantity parsing"
    assert spec.targets[QUEUE_METRIC] > 0 and spec.down.window_s == 300, f"read {spec}"


def test_a_traffic_step_is_followed_up_and_back_down():
    spec = HpaSpec(2, 20, {QUEUE_METRIC: 1500.0, RATE_METRIC: 3.5}, UP, DOWN)
    traffic = np.concatenate([np.full(1800, 5.0), np.full(1800, 30.0), np.full(2400, 5.0)])
    out = simulate.simulate(spec, traffic, mu=5.0, start_delay_s=30.0, initial=2)
    assert out["ready"][3000] >= 30 / 5, f"{out['ready'][3000]} replicas cannot serve 30 img/s at 5 img/s each"
    assert out["ready"][-1] <= 3, f"did not scale back down after the step: {out['ready'][-1]}"
    changes = int(np.count_nonzero(np.diff(out["desired"])))
    assert changes <= 12, f"{changes} scale changes for one step up and down: flapping"
