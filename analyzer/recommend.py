"""Choosing KEDA and SandboxWarmPool settings from one agent's idle curves, and emitting them as YAML.

Costs per day, with X = idle cost per sandbox-hour and Y = cost of one cold start:

- Warm floor of N sandboxes (SandboxWarmPool `spec.replicas`, the scaler's `warmFloor`, KEDA
  `minReplicaCount`): a pooled sandbox is idle until claimed and is replaced at once, so the floor costs
  N x 24 h x X, plus the claims that find the pool empty in the replay x Y.
- Scale to zero with `cooldownPeriod` c: the last sandbox stays up c seconds after the agent went idle:
  idle sandbox-seconds/day (sum of min(gap, c) per day) / 3600 x X, plus the arrivals with gap > c x Y.

The scale-to-zero figures model the step to zero exactly (an arrival after a gap > c starts cold) and
count an arrival while another run is in flight as warm: the scaler's metric then keeps one sandbox per
run in flight, so only the bursts faster than the metric's polling are optimistic there; the warm-floor
replay is exact for one sandbox per claim.

Each plan is chosen as the cheapest setting whose warm-hit rate (1 - cold fraction) reaches the target
(when none does, the one closest to it). Of the two plans the cheaper one that reaches the target is
recommended: `minReplicaCount: 0` with that cooldown, or the warm floor.

The 1..N range is the HPA's `behavior.scaleDown.stabilizationWindowSeconds` (cooldownPeriod governs only
the step to zero): the same rule applied to the idle gaps of the 2nd, 3rd, ... replica
(`idle.scale_up_gaps`): a replica kept w seconds after demand fell costs min(gap, w) idle seconds and a
cold start when demand comes back later than w; candidates up to the HPA's maximum of 3600 s. With never
more than one run at once there is nothing to measure and the HPA default (300 s) is kept.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import quote

import yaml

from analyzer.dataset import AnalyzerError
from analyzer.idle import DAY_S, GRID_S, CooldownPoint, GroupIdle
from analyzer.warm_pool import PoolResult

Emit = Literal["keda", "warmpool", "all"]
DEFAULT_SCALER_ADDRESS = "agentmeter-collector-ext.agentmeter.svc.cluster.local:9090"
HPA_MAX_WINDOW_S = 3600
HPA_DEFAULT_WINDOW_S = 300


@dataclass(frozen=True)
class Costs:
    idle_cost_per_hour: float  # one idle sandbox (or pod) for an hour
    cold_start_cost: float  # one claim that waits for a cold start

    def __post_init__(self) -> None:
        if self.idle_cost_per_hour < 0 or self.cold_start_cost < 0:
            raise AnalyzerError("--idle-cost-per-hour and --cold-start-cost must be >= 0")


@dataclass(frozen=True)
class Choice:
    """One candidate setting with its warm-hit rate and cost per day."""

    setting: float
    warm_hit: float
    cost_per_day: float
    meets_target: bool


@dataclass(frozen=True)
class Recommendation:
    agent: str
    target_warm_hit: float
    idle: GroupIdle
    costs: Costs
    pool: Choice  # setting = warm floor size
    cooldown: Choice  # setting = cooldownPeriod seconds
    scale_to_zero: bool  # True: minReplicaCount 0 + cooldown; False: the warm floor
    scale_down: Choice | None  # setting = stabilizationWindowSeconds; None: never two runs at once

    @property
    def warm_floor(self) -> int:
        return 0 if self.scale_to_zero else int(self.pool.setting)

    @property
    def cooldown_s(self) -> int:
        return int(self.cooldown.setting)

    @property
    def stabilization_window_s(self) -> int:
        return HPA_DEFAULT_WINDOW_S if self.scale_down is None else int(self.scale_down.setting)

    @property
    def max_replicas(self) -> int:
        return max(1, self.warm_floor + self.idle.peak_concurrency)

    @property
    def polling_interval_s(self) -> int:
        # Polling faster than a sandbox can start buys nothing; slower than 30 s delays every scale-up.
        return min(30, max(5, math.ceil(self.idle.cold_start_s)))


def _pool_choices(idle: GroupIdle, costs: Costs, target: float, per_day: float) -> list[Choice]:
    return [_pool_choice(r, costs, target, per_day) for r in idle.warm_pool]


def _pool_choice(result: PoolResult, costs: Costs, target: float, per_day: float) -> Choice:
    cost = result.size * 24 * costs.idle_cost_per_hour + result.empty_fraction * per_day * costs.cold_start_cost
    warm_hit = 1 - result.empty_fraction
    return Choice(setting=result.size, warm_hit=warm_hit, cost_per_day=cost, meets_target=warm_hit >= target)


def _cooldown_choice(point: CooldownPoint, costs: Costs, target: float) -> Choice:
    idle_hours = (point.idle_pod_seconds_per_day or 0.0) / 3600
    cost = idle_hours * costs.idle_cost_per_hour + (point.cold_starts_per_day or 0.0) * costs.cold_start_cost
    warm_hit = 1 - point.cold_start_fraction
    return Choice(setting=point.cooldown_s, warm_hit=warm_hit, cost_per_day=cost, meets_target=warm_hit >= target)


def _window_choice(gaps: list[float], window: float, costs: Costs, target: float, days: float) -> Choice:
    late = sum(1 for gap in gaps if gap > window)
    idle_hours_per_day = sum(min(gap, window) for gap in gaps) / days / 3600
    cost = idle_hours_per_day * costs.idle_cost_per_hour + late / days * costs.cold_start_cost
    warm_hit = 1 - late / len(gaps)
    return Choice(setting=window, warm_hit=warm_hit, cost_per_day=cost, meets_target=warm_hit >= target)


def _best(choices: list[Choice]) -> Choice:
    """Cheapest that meets the target (smallest setting on a tie); else the highest warm-hit rate."""
    meeting = [c for c in choices if c.meets_target]
    if meeting:
        return min(meeting, key=lambda c: (c.cost_per_day, c.setting))
    return max(choices, key=lambda c: (c.warm_hit, -c.setting))


def recommend(idle: GroupIdle, target_warm_hit: float, costs: Costs) -> Recommendation:
    if not 0 <= target_warm_hit <= 1:
        raise AnalyzerError("--target-warm-hit must be between 0 and 1")
    per_day = idle.arrivals_per_day
    if per_day is None or not idle.cooldowns:
        raise AnalyzerError(
            f"agent {idle.group!r} has {idle.arrivals} run(s) over {idle.window_s:g} s: "
            "need at least two arrivals at different times to recommend"
        )
    pool = _best(_pool_choices(idle, costs, target_warm_hit, per_day))
    cooldown = _best([_cooldown_choice(p, costs, target_warm_hit) for p in idle.cooldowns])
    if cooldown.meets_target != pool.meets_target:
        scale_to_zero = cooldown.meets_target
    else:
        scale_to_zero = cooldown.cost_per_day < pool.cost_per_day
    if idle.scale_up_gaps is None:
        raise ValueError("recommend() needs the scale-up gaps: analyze_idle(..., with_scale_up_gaps=True)")
    scale_down = None
    if idle.scale_up_gaps:
        days = idle.window_s / DAY_S
        windows = [w for w in GRID_S if w <= HPA_MAX_WINDOW_S]
        scale_down = _best([_window_choice(idle.scale_up_gaps, w, costs, target_warm_hit, days) for w in windows])
    return Recommendation(
        agent=idle.group,
        target_warm_hit=target_warm_hit,
        idle=idle,
        costs=costs,
        pool=pool,
        cooldown=cooldown,
        scale_to_zero=scale_to_zero,
        scale_down=scale_down,
    )


def k8s_name(text: str) -> str:
    """A DNS-1123 name from an agent name ('Research Agent' -> 'research-agent')."""
    name = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")[:50].strip("-")
    return name or "agent"


def scaled_object(
    rec: Recommendation, *, namespace: str | None, scaler_address: str, pool_name: str, target_pool: bool
) -> dict:
    metadata = {"agent": rec.agent, "warmFloor": str(rec.warm_floor), "targetPerReplica": "1"}
    if namespace:
        metadata["namespace"] = namespace
    if target_pool:
        target = {"apiVersion": "extensions.agents.x-k8s.io/v1beta1", "kind": "SandboxWarmPool", "name": pool_name}
    else:
        target = {"apiVersion": "apps/v1", "kind": "Deployment", "name": k8s_name(rec.agent)}
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": _object_meta(f"{k8s_name(rec.agent)}-scaler", namespace),
        "spec": {
            "scaleTargetRef": target,
            "pollingInterval": rec.polling_interval_s,
            "cooldownPeriod": rec.cooldown_s,
            "minReplicaCount": rec.warm_floor,
            "maxReplicaCount": rec.max_replicas,
            "advanced": {
                "horizontalPodAutoscalerConfig": {
                    "behavior": {
                        "scaleUp": {"stabilizationWindowSeconds": 0},
                        "scaleDown": {"stabilizationWindowSeconds": rec.stabilization_window_s},
                    }
                }
            },
            "triggers": [
                {
                    "type": "external",
                    "metricType": "AverageValue",
                    "metadata": {"scalerAddress": scaler_address, **metadata},
                }
            ],
        },
    }


def sandbox_warm_pool(rec: Recommendation, *, namespace: str | None, pool_name: str, template: str) -> dict:
    return {
        "apiVersion": "extensions.agents.x-k8s.io/v1beta1",
        "kind": "SandboxWarmPool",
        "metadata": _object_meta(pool_name, namespace),
        "spec": {"replicas": int(rec.pool.setting), "sandboxTemplateRef": {"name": template}},
    }


def _object_meta(name: str, namespace: str | None) -> dict:
    meta: dict = {"name": name, "labels": {"app.kubernetes.io/managed-by": "agentmeter"}}
    if namespace:
        meta["namespace"] = namespace
    return meta


def _pct(value: float) -> str:
    return f"{value * 100:.2f}%"


def _comment(lines: list[str]) -> str:
    return "".join(f"# {line}\n" if line else "#\n" for line in lines)


def _common_lines(rec: Recommendation) -> list[str]:
    idle, costs = rec.idle, rec.costs
    return [
        f"agentmeter recommendation for agent {rec.agent!r}",
        f"observed: {idle.arrivals} runs over {idle.window_s / DAY_S:.2f} days "
        f"({idle.arrivals_per_day:.1f} arrivals/day), idle gap p50 {idle.p50_gap_s:.0f} s, "
        f"p90 {idle.p90_gap_s:.0f} s, p99 {idle.p99_gap_s:.0f} s",
        f"concurrency: peak {idle.peak_concurrency}, p99 {idle.p99_concurrency}, busy {_pct(idle.busy_fraction)}",
        f"start-up time {idle.cold_start_s:g} s ({idle.cold_start_source})",
        f"target warm-hit {_pct(rec.target_warm_hit)}; costs: idle ${costs.idle_cost_per_hour:g}/sandbox-hour, "
        f"${costs.cold_start_cost:g}/cold start",
    ]


def _plan_lines(rec: Recommendation) -> list[str]:
    pool, cool = rec.pool, rec.cooldown
    reach = {True: "reaches the target", False: "best reachable, BELOW the target"}
    chosen = "scale to zero" if rec.scale_to_zero else "warm floor"
    return [
        f"warm floor {int(pool.setting)} (replayed claims): warm-hit {_pct(pool.warm_hit)}, "
        f"${pool.cost_per_day:.2f}/day ({reach[pool.meets_target]})",
        f"scale to zero, cooldownPeriod {int(cool.setting)} s: warm-hit {_pct(cool.warm_hit)}, "
        f"${cool.cost_per_day:.2f}/day ({reach[cool.meets_target]})",
        f"chosen: {chosen}",
    ]


def emit_yaml(
    rec: Recommendation,
    emit: Emit = "all",
    *,
    namespace: str | None = None,
    scaler_address: str = DEFAULT_SCALER_ADDRESS,
    template: str | None = None,
) -> str:
    """YAML documents with comments giving the numbers behind each choice."""
    pool_name = f"{k8s_name(rec.agent)}-warm-pool"
    docs: list[str] = []
    if emit in ("warmpool", "all"):
        pool = sandbox_warm_pool(
            rec, namespace=namespace, pool_name=pool_name, template=template or k8s_name(rec.agent)
        )
        lines = [
            f"spec.replicas {int(rec.pool.setting)}: the cheapest pool size whose replayed claims find a ready "
            f"sandbox {_pct(rec.pool.warm_hit)} of the time",
            "empty-pool fraction by size: "
            + ", ".join(f"{r.size}: {_pct(r.empty_fraction)}" for r in rec.idle.warm_pool[:12]),
        ]
        if emit == "all":
            lines.append("KEDA scales spec.replicas through the pool's scale subresource (ScaledObject below)")
        docs.append(_comment(lines) + yaml.safe_dump(pool, sort_keys=False))
    if emit in ("keda", "all"):
        obj = scaled_object(
            rec, namespace=namespace, scaler_address=scaler_address, pool_name=pool_name, target_pool=emit == "all"
        )
        docs.append(_comment(_keda_lines(rec, scaler_address)) + yaml.safe_dump(obj, sort_keys=False))
    header = _comment(_common_lines(rec) + _plan_lines(rec))
    return header + "#\n" + "---\n".join(docs)


def _keda_lines(rec: Recommendation, scaler_address: str) -> list[str]:
    by_cooldown = ", ".join(
        f"{int(p.cooldown_s)} s: {_pct(p.cold_start_fraction)}" for p in rec.idle.cooldowns if p.cooldown_s <= 7200
    )
    floor = (
        "0: scale to zero is the cheaper plan at the target"
        if rec.scale_to_zero
        else f"{rec.warm_floor}: the warm floor is the cheaper plan (the target is out of reach by cooldown alone)"
        if not rec.cooldown.meets_target
        else f"{rec.warm_floor}: the warm floor is the cheaper plan at the target"
    )
    return [
        f"minReplicaCount / warmFloor {floor}",
        f"cooldownPeriod {rec.cooldown_s} s: cold-start fraction P(idle gap > cooldown) {_pct(1 - rec.cooldown.warm_hit)}"
        + ("" if rec.scale_to_zero else "; applies only if minReplicaCount is lowered to 0"),
        f"cold-start fraction by cooldown: {by_cooldown}",
        _window_line(rec),
        f"maxReplicaCount {rec.max_replicas}: warm floor + observed peak concurrency {rec.idle.peak_concurrency}",
        f"pollingInterval {rec.polling_interval_s} s: about one start-up time, within 5..30 s",
        "metric: in-flight runs of the agent + warmFloor, served live by agentmeter's external scaler",
        "without gRPC: a metrics-api trigger reading the same figure from the receiver's HTTP endpoint, e.g.",
        f"  url: http://{scaler_address.rpartition(':')[0]}:4318/v1/demand?agent={quote(rec.agent)}"
        f"&warmFloor={rec.warm_floor}, valueLocation: value, targetValue: '1'",
    ]


def _window_line(rec: Recommendation) -> str:
    prefix = f"scaleDown.stabilizationWindowSeconds {rec.stabilization_window_s} s (the 1..N range): "
    if rec.scale_down is None:
        return prefix + "never two runs at once in the data, the HPA default"
    down = rec.scale_down
    gaps = len(rec.idle.scale_up_gaps or [])
    return prefix + (
        f"{_pct(down.warm_hit)} of {gaps} returns to a higher replica count come within it, "
        f"${down.cost_per_day:.2f}/day" + ("" if down.meets_target else " (best reachable, BELOW the target)")
    )
