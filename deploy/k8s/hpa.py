"""Kubernetes' HorizontalPodAutoscaler algorithm (pkg/controller/podautoscaler), for the capacity simulation.

Every ``SYNC_PERIOD_S``: ``desired = ceil(pods_with_metrics * metric / target)`` unless within the 10 % tolerance,
pods without metrics (starting up) counted as 0 when scaling up and as at target when scaling down, then the
``behavior`` of the HPA manifest (stabilization windows, rate policies) and min/max replicas.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

SYNC_PERIOD_S = 15


def quantity(value: str | float) -> float:
    """A Kubernetes quantity such as ``"1500"`` or ``"3500m"`` as a number."""
    text = str(value)
    return float(text[:-1]) / 1000.0 if text.endswith("m") else float(text)


@dataclass(frozen=True)
class Policy:
    kind: str  # "Pods" or "Percent"
    value: int
    period_s: int


@dataclass(frozen=True)
class Rules:
    window_s: int
    select: str  # "Max", "Min" or "Disabled"
    policies: tuple[Policy, ...]

    @classmethod
    def from_manifest(cls, rules: dict) -> Rules:
        policies = tuple(Policy(p["type"], int(p["value"]), int(p["periodSeconds"])) for p in rules["policies"])
        return cls(int(rules["stabilizationWindowSeconds"]), rules.get("selectPolicy", "Max"), policies)


QUEUE_METRIC = "artserve_queue_time_ms"
RATE_METRIC = "artserve_requests_per_second"


@dataclass(frozen=True)
class HpaSpec:
    min_replicas: int
    max_replicas: int
    targets: dict[str, float]  # Pods metric name -> averageValue
    up: Rules
    down: Rules
    tolerance: float = 0.1

    @classmethod
    def from_manifest(cls, hpa: dict, overrides: dict[str, float] | None = None) -> HpaSpec:
        spec = hpa["spec"]
        targets = {m["pods"]["metric"]["name"]: quantity(m["pods"]["target"]["averageValue"]) for m in spec["metrics"]}
        targets.update({k: v for k, v in (overrides or {}).items() if k in targets and v is not None})
        return cls(
            int(spec.get("minReplicas", 1)),
            int(spec["maxReplicas"]),
            targets,
            Rules.from_manifest(spec["behavior"]["scaleUp"]),
            Rules.from_manifest(spec["behavior"]["scaleDown"]),
        )


def metric_replicas(current: int, values: list[float], missing: int, target: float, tolerance: float = 0.1) -> int:
    """The replica calculator for a Pods metric (``calcPlainMetricReplicas``); ``missing``: pods without metrics."""
    if not values:
        return current  # no metrics at all: the HPA reports an error and keeps the scale
    ratio = sum(values) / len(values) / target
    if missing == 0:
        return current if abs(1.0 - ratio) <= tolerance else math.ceil(ratio * len(values))
    fill = target if ratio < 1.0 else 0.0
    new_ratio = (sum(values) + fill * missing) / (len(values) + missing) / target
    if abs(1.0 - new_ratio) <= tolerance or (ratio < 1.0) != (new_ratio < 1.0):
        return current
    proposed = math.ceil(new_ratio * (len(values) + missing))
    if (new_ratio < 1.0 and proposed > current) or (new_ratio > 1.0 and proposed < current):
        return current
    return proposed


def _changed_within(events: list[tuple[float, int]], now: float, period_s: int) -> int:
    return sum(n for t, n in events if t > now - period_s)


def scale_up_limit(current: int, now: float, ups: list, downs: list, rules: Rules) -> int:
    """Most replicas the scale-up policies allow now (``calculateScaleUpLimitWithScalingRules``)."""
    if rules.select == "Disabled":
        return current
    proposals = []
    for p in rules.policies:
        start = current - _changed_within(ups, now, p.period_s) + _changed_within(downs, now, p.period_s)
        proposals.append(start + p.value if p.kind == "Pods" else math.ceil(start * (1 + p.value / 100)))
    return max(proposals) if rules.select == "Max" else min(proposals)


def scale_down_limit(current: int, now: float, ups: list, downs: list, rules: Rules) -> int:
    """Fewest replicas the scale-down policies allow now (``calculateScaleDownLimitWithBehaviors``)."""
    if rules.select == "Disabled":
        return current
    proposals = []
    for p in rules.policies:
        start = current - _changed_within(ups, now, p.period_s) + _changed_within(downs, now, p.period_s)
        proposals.append(start - p.value if p.kind == "Pods" else int(start * (1 - p.value / 100)))
    return min(proposals) if rules.select == "Max" else max(proposals)


@dataclass
class Autoscaler:
    """The HPA controller's state for one target: past recommendations and scale events."""

    spec: HpaSpec
    recommendations: list[tuple[float, int]] = field(default_factory=list)
    ups: list[tuple[float, int]] = field(default_factory=list)
    downs: list[tuple[float, int]] = field(default_factory=list)

    def step(self, now: float, current: int, values: dict[str, list[float]], missing: int) -> int:
        """One sync: the largest proposal over the metrics, stabilized, rate-limited and clamped."""
        s = self.spec
        desired = max(metric_replicas(current, values[m], missing, t, s.tolerance) for m, t in s.targets.items())
        desired = min(max(desired, s.min_replicas), s.max_replicas)
        # Stabilization: the highest recommendation of the scale-down window, the lowest of the scale-up one.
        # The controller seeds the history with the current scale, so a new HPA does not scale down at once.
        if not self.recommendations:
            self.recommendations.append((now, current))
        self.recommendations.append((now, desired))
        keep = max(s.up.window_s, s.down.window_s)
        self.recommendations = [(t, r) for t, r in self.recommendations if t > now - keep - SYNC_PERIOD_S]
        up_rec = min([r for t, r in self.recommendations if t > now - s.up.window_s] + [desired])
        down_rec = max([r for t, r in self.recommendations if t > now - s.down.window_s] + [desired])
        stabilized = min(max(current, up_rec), down_rec)
        if stabilized > current:
            limit = max(scale_up_limit(current, now, self.ups, self.downs, s.up), current)
            stabilized = min(stabilized, limit, s.max_replicas)
        elif stabilized < current:
            limit = min(scale_down_limit(current, now, self.ups, self.downs, s.down), current)
            stabilized = max(stabilized, limit, s.min_replicas)
        if stabilized > current:
            self.ups.append((now, stabilized - current))
        elif stabilized < current:
            self.downs.append((now, current - stabilized))
        return stabilized
