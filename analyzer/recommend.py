"""Choosing KEDA and SandboxWarmPool settings from one agent's runs, and emitting them as YAML.

The plan is a KEDA ScaledObject that scales an Agent Sandbox SandboxWarmPool through the pool's scale
subresource, on agentmeter's `unclaimedSandboxes` metric (collector_ext/keda/target.py): the floor plus the
claims expected within one start-up time. Pool replicas are unclaimed sandboxes (a claimed one leaves the
pool and is replaced), so that is what the pool must hold. Each candidate plan, a warm floor N
(minReplicaCount, the trigger's warmFloor) and for N = 0 a cooldownPeriod c (the step to zero), is replayed
over the observed arrivals exactly as KEDA and the pool controller would run it (analyzer/warm_pool.py
`replay_plan`), and costs per day, with X = idle cost per sandbox-hour and Y = cost of one cold start:

    unclaimed sandbox-hours per day (starting or ready, never claimed ones) x X + cold starts per day x Y

The plan chosen is the cheapest whose warm-hit rate (1 - cold fraction) reaches the target (when none does,
the one closest to it). X and Y come from data where they can (analyzer/sandbox_cost.py) and are otherwise
named in the output as assumptions to set.

Because KEDA owns spec.replicas of a pool it scales, the emitted SandboxWarmPool leaves replicas out (a
re-apply would otherwise reset the autoscaled size: Agent Sandbox's examples/keda-scale-to-zero does the
same); both documents are written from the one plan. `--emit warmpool` alone is a static pool without KEDA:
its spec.replicas is the cheapest fixed size (`replay` of a fixed pool).

The 1..N range is the HPA's `behavior.scaleDown.stabilizationWindowSeconds` (cooldownPeriod governs only
the step to zero): the same rule applied to the idle gaps of the 2nd, 3rd, ... replica
(`idle.scale_up_gaps`): a replica kept w seconds after demand fell costs min(gap, w) idle seconds and a
cold start when demand comes back later than w; candidates up to the HPA's maximum of 3600 s. With never
more than one run at once there is nothing to measure and the HPA default (300 s) is kept. pollingInterval
is about one start-up time, within 5..30 s.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from itertools import repeat
from pathlib import Path
from typing import Literal
from urllib.parse import urlencode

import yaml

from analyzer.dataset import AnalyzerError, Dataset
from analyzer.gpu import GpuPrices
from analyzer.idle import DAY_S, GRID_S, GroupIdle, analyze_idle, with_replay_inputs
from analyzer.sandbox_cost import SandboxCosts, sandbox_costs
from analyzer.warm_pool import KedaPlan, PlanReplay, PlanResult, PoolResult, busiest_window, replicas_for_busiest
from collector_ext.keda.target import DEFAULT_RATE_WINDOW_S

Emit = Literal["keda", "warmpool", "all"]
DEFAULT_SCALER_ADDRESS = "agentmeter-collector-ext.agentmeter.svc.cluster.local:9090"
HPA_MAX_WINDOW_S = 3600
HPA_DEFAULT_WINDOW_S = 300
KEDA_DEFAULT_COOLDOWN_S = 300  # emitted with a warm floor, where it never applies
POOL_API = "extensions.agents.x-k8s.io/v1beta1"


@dataclass(frozen=True)
class Costs:
    idle_cost_per_hour: float  # one idle sandbox for an hour
    cold_start_cost: float  # one claim that waits for a cold start

    def __post_init__(self) -> None:
        if self.idle_cost_per_hour < 0 or self.cold_start_cost < 0:
            raise AnalyzerError("--idle-cost-per-hour and --cold-start-cost must be >= 0")

    @classmethod
    def of(cls, found: SandboxCosts) -> Costs:
        return cls(found.idle_cost_per_hour, found.cold_start_cost)


@dataclass(frozen=True)
class Choice:
    """One candidate setting with its warm-hit rate and cost per day."""

    setting: float
    warm_hit: float
    cost_per_day: float
    meets_target: bool


@dataclass(frozen=True)
class PlanChoice:
    """One candidate KEDA plan replayed over the arrivals."""

    plan: KedaPlan
    result: PlanResult
    warm_hit: float
    cost_per_day: float
    meets_target: bool

    @property
    def unclaimed_hours_per_day(self) -> float:
        days = self.result.window_s / DAY_S
        return self.result.unclaimed_s / 3600 / days if days > 0 else 0.0


@dataclass(frozen=True)
class Recommendation:
    agent: str
    target_warm_hit: float
    idle: GroupIdle
    costs: Costs
    plan: PlanChoice  # the KEDA-scaled pool
    candidates: list[PlanChoice]  # every plan replayed, for the comments
    static_pool: Choice  # setting = size of a pool without KEDA
    scale_down: Choice | None  # setting = stabilizationWindowSeconds; None: never two runs at once
    cost_notes: tuple[list[str], list[str]] = ([], [])  # (sources, assumptions) of the costs

    @property
    def warm_floor(self) -> int:
        return self.plan.plan.warm_floor

    @property
    def scale_to_zero(self) -> bool:
        return self.warm_floor == 0

    @property
    def cooldown_s(self) -> int:
        return int(self.plan.plan.cooldown_s)

    @property
    def stabilization_window_s(self) -> int:
        return HPA_DEFAULT_WINDOW_S if self.scale_down is None else int(self.scale_down.setting)

    @property
    def max_replicas(self) -> int:
        return self.plan.plan.max_replicas

    @property
    def polling_interval_s(self) -> int:
        return polling_interval(self.idle.cold_start_s)


def polling_interval(startup_s: float) -> int:
    # Polling faster than a sandbox can start buys nothing; slower than 30 s delays every scale-up.
    return min(30, max(5, math.ceil(startup_s)))


def _pool_choice(result: PoolResult, costs: Costs, target: float, per_day: float) -> Choice:
    cost = result.size * 24 * costs.idle_cost_per_hour + result.empty_fraction * per_day * costs.cold_start_cost
    warm_hit = 1 - result.empty_fraction
    return Choice(setting=result.size, warm_hit=warm_hit, cost_per_day=cost, meets_target=warm_hit >= target)


def _plan_choice(plan: KedaPlan, result: PlanResult, costs: Costs, target: float) -> PlanChoice:
    days = result.window_s / DAY_S
    idle_hours = result.unclaimed_s / 3600
    cost = (idle_hours * costs.idle_cost_per_hour + result.empty_claims * costs.cold_start_cost) / days
    warm_hit = 1 - result.empty_fraction
    return PlanChoice(plan, result, warm_hit, cost, warm_hit >= target)


def _window_choice(gaps: list[float], window: float, costs: Costs, target: float, days: float) -> Choice:
    late = sum(1 for gap in gaps if gap > window)
    idle_hours_per_day = sum(map(min, gaps, repeat(window))) / days / 3600  # min(gap, window), summed in order
    cost = idle_hours_per_day * costs.idle_cost_per_hour + late / days * costs.cold_start_cost
    warm_hit = 1 - late / len(gaps)
    return Choice(setting=window, warm_hit=warm_hit, cost_per_day=cost, meets_target=warm_hit >= target)


def _best(choices: list[Choice]) -> Choice:
    """Cheapest that meets the target (smallest setting on a tie); else the highest warm-hit rate."""
    meeting = [c for c in choices if c.meets_target]
    if meeting:
        return min(meeting, key=lambda c: (c.cost_per_day, c.setting))
    return max(choices, key=lambda c: (c.warm_hit, -c.setting))


def _best_plan(choices: list[PlanChoice]) -> PlanChoice:
    """Cheapest that meets the target (smaller floor, then cooldown, on a tie); else the highest warm-hit."""
    meeting = [c for c in choices if c.meets_target]
    if meeting:
        return min(meeting, key=lambda c: (c.cost_per_day, c.plan.warm_floor, c.plan.cooldown_s))
    return max(choices, key=lambda c: (c.warm_hit, -c.plan.warm_floor, -c.plan.cooldown_s))


def recommend(
    idle: GroupIdle,
    target_warm_hit: float,
    costs: Costs,
    *,
    rate_window_s: float = DEFAULT_RATE_WINDOW_S,
    cost_notes: tuple[list[str], list[str]] = ([], []),
) -> Recommendation:
    """The plan for one agent (`idle` from analyze_idle(..., with_scale_up_gaps=True, with_arrivals=True))."""
    if not 0 <= target_warm_hit <= 1:
        raise AnalyzerError("--target-warm-hit must be between 0 and 1")
    per_day = idle.arrivals_per_day
    if per_day is None or not idle.cooldowns:
        raise AnalyzerError(
            f"agent {idle.group!r} has {idle.arrivals} run(s) over {idle.window_s:g} s: "
            "need at least two arrivals at different times to recommend"
        )
    if idle.scale_up_gaps is None or idle.arrivals_ns is None:
        raise ValueError(
            "recommend() needs the scale-up gaps and arrivals: analyze_idle(..., with_scale_up_gaps=True, "
            "with_arrivals=True)"
        )
    arrivals_ns = idle.arrivals_ns
    scale_down = None
    if idle.scale_up_gaps:
        days = idle.window_s / DAY_S
        windows = [w for w in GRID_S if w <= HPA_MAX_WINDOW_S]
        scale_down = _best([_window_choice(idle.scale_up_gaps, w, costs, target_warm_hit, days) for w in windows])
    stabilization = HPA_DEFAULT_WINDOW_S if scale_down is None else scale_down.setting
    static_pool = _best([_pool_choice(r, costs, target_warm_hit, per_day) for r in idle.warm_pool])
    # Floors up to the static pool that no claim finds empty (the metric's claims term only adds to it), and
    # no further than the first floor that no claim finds empty: more only costs more. Cooldowns only for the
    # floor 0, and no further than one that outlasts every gap: longer ones never scale to zero either.
    largest_floor = max(1, max(r.size for r in idle.warm_pool))
    longest_gap_s = max(b - a for a, b in zip(arrivals_ns, arrivals_ns[1:], strict=False)) / 1e9
    polling = polling_interval(idle.cold_start_s)
    busiest = busiest_window(arrivals_ns, rate_window_s)  # the same for every floor: scanned once
    replays = PlanReplay(arrivals_ns, rate_window_s, polling)  # what every candidate's replay reads, once
    candidates = []
    for floor in range(largest_floor + 1):
        for cooldown in GRID_S if floor == 0 else (KEDA_DEFAULT_COOLDOWN_S,):
            plan = KedaPlan(
                warm_floor=floor,
                cooldown_s=cooldown,
                startup_s=idle.cold_start_s,
                rate_window_s=rate_window_s,
                polling_s=polling,
                stabilization_s=stabilization,
                max_replicas=replicas_for_busiest(busiest, rate_window_s, idle.cold_start_s, floor),
            )
            candidates.append(_plan_choice(plan, replays.replay(plan), costs, target_warm_hit))
            if cooldown > longest_gap_s + rate_window_s + polling:
                break
        if candidates[-1].result.empty_claims == 0:
            break
    return Recommendation(
        agent=idle.group,
        target_warm_hit=target_warm_hit,
        idle=idle,
        costs=costs,
        plan=_best_plan(candidates),
        candidates=candidates,
        static_pool=static_pool,
        scale_down=scale_down,
        cost_notes=cost_notes,
    )


def recommend_agent(
    ds: Dataset,
    agent: str,
    *,
    target_warm_hit: float = 0.99,
    since: datetime | None = None,
    until: datetime | None = None,
    namespace: str | None = None,
    cold_start_s: float | None = None,
    idle_cost_per_hour: float | None = None,
    cold_start_cost: float | None = None,
    sandbox_template: Path | None = None,
    cpu_price: float | None = None,
    memory_price: float | None = None,
    gpu_prices_file: Path | None = None,
    idle: GroupIdle | None = None,
    gpu_costs: Mapping[str, tuple[float, int]] | None = None,
) -> Recommendation:
    """The plan for one agent's runs in the window (`analyze recommend`, the console's Agents page): its idle
    curves, what an idle sandbox and a cold start cost (analyzer/sandbox_cost.py), the cheapest plan.

    A caller that keeps answers (the console) may pass what it has: `idle`, the agent's group of
    analyze_idle(ds, by="agent", ...) over the same window, namespace and cold start (its arrivals and
    scale-up gaps are then read for this agent alone), and `gpu_costs`, `agent_gpu_costs` at the same GPU
    prices."""
    if idle is None:
        groups = analyze_idle(
            ds,
            by="agent",
            since=since,
            until=until,
            namespace=namespace,
            group=agent,
            cold_start_s=cold_start_s,
            with_scale_up_gaps=True,
            with_arrivals=True,
        )
        if not groups:
            where = f" in namespace {namespace}" if namespace else ""
            raise AnalyzerError(f"no runs of agent {agent!r}{where} in the dataset")
        idle = groups[0]
    elif idle.group != agent:
        raise ValueError(f"recommend_agent({agent!r}) was given the idle analysis of {idle.group!r}")
    elif idle.scale_up_gaps is None or idle.arrivals_ns is None:  # a copy: the caller's analysis is kept
        idle = with_replay_inputs(ds, idle, since=since, until=until, namespace=namespace)
    found = sandbox_costs(
        ds,
        agent,
        idle.cold_start_s,
        idle_cost_per_hour=idle_cost_per_hour,
        cold_start_cost=cold_start_cost,
        sandbox_template=sandbox_template,
        cpu_price=cpu_price,
        memory_price=memory_price,
        gpu_prices=GpuPrices.load(gpu_prices_file),
        gpu_costs=gpu_costs,
    )
    return recommend(idle, target_warm_hit, Costs.of(found), cost_notes=(found.sources, found.assumptions))


def k8s_name(text: str) -> str:
    """A DNS-1123 name from an agent name ('Research Agent' -> 'research-agent')."""
    name = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")[:50].strip("-")
    return name or "agent"


def trigger_metadata(rec: Recommendation, namespace: str | None) -> dict[str, str]:
    """What the ScaledObject's trigger hands agentmeter's external scaler: the plan's metric."""
    plan = rec.plan.plan
    metadata = {
        "agent": rec.agent,
        "target": "unclaimedSandboxes",
        "warmFloor": str(plan.warm_floor),
        "startupSeconds": f"{plan.startup_s:g}",
        "rateWindowSeconds": f"{plan.rate_window_s:g}",
        "targetPerReplica": "1",
    }
    if namespace:
        metadata["namespace"] = namespace
    return metadata


def scaled_object(rec: Recommendation, *, namespace: str | None, scaler_address: str, pool_name: str) -> dict:
    plan = rec.plan.plan
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": _object_meta(f"{k8s_name(rec.agent)}-scaler", namespace),
        "spec": {
            "scaleTargetRef": {"apiVersion": POOL_API, "kind": "SandboxWarmPool", "name": pool_name},
            "pollingInterval": int(plan.polling_s),
            "cooldownPeriod": int(plan.cooldown_s),
            "minReplicaCount": plan.warm_floor,
            "maxReplicaCount": plan.max_replicas,
            "advanced": {
                "horizontalPodAutoscalerConfig": {
                    "behavior": {
                        "scaleUp": {"stabilizationWindowSeconds": 0},
                        "scaleDown": {"stabilizationWindowSeconds": int(plan.stabilization_s)},
                    }
                }
            },
            "triggers": [
                {
                    "type": "external",
                    "metricType": "AverageValue",
                    "metadata": {"scalerAddress": scaler_address, **trigger_metadata(rec, namespace)},
                }
            ],
        },
    }


def sandbox_warm_pool(
    rec: Recommendation, *, namespace: str | None, pool_name: str, template: str, scaled_by_keda: bool
) -> dict:
    spec: dict = {"sandboxTemplateRef": {"name": template}}
    if not scaled_by_keda:
        spec = {"replicas": int(rec.static_pool.setting), **spec}
    return {
        "apiVersion": POOL_API,
        "kind": "SandboxWarmPool",
        "metadata": _object_meta(pool_name, namespace),
        "spec": spec,
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


def plan_summary(rec: Recommendation) -> str:
    """The plan in one line: the same words head the pool and the ScaledObject."""
    plan = rec.plan.plan
    if rec.scale_to_zero:
        floor = f"scale to zero after {int(plan.cooldown_s)} s without claims"
    else:
        floor = f"a warm floor of {plan.warm_floor}"
    return (
        f"plan: unclaimed sandboxes = {plan.warm_floor} + claims in the last {plan.rate_window_s:g} s / "
        f"{plan.rate_window_s:g} s x {plan.startup_s:g} s start-up, {floor}, at most {plan.max_replicas}"
    )


def _common_lines(rec: Recommendation) -> list[str]:
    idle = rec.idle
    sources, assumptions = rec.cost_notes
    lines = [
        f"agentmeter recommendation for agent {rec.agent!r}",
        f"observed: {idle.arrivals} runs over {idle.window_s / DAY_S:.2f} days "
        f"({idle.arrivals_per_day:.1f} arrivals/day), idle gap p50 {idle.p50_gap_s:.0f} s, "
        f"p90 {idle.p90_gap_s:.0f} s, p99 {idle.p99_gap_s:.0f} s",
        f"concurrency: peak {idle.peak_concurrency}, p99 {idle.p99_concurrency}, busy {_pct(idle.busy_fraction)}",
        f"start-up time {idle.cold_start_s:g} s ({idle.cold_start_source})",
        f"target warm-hit {_pct(rec.target_warm_hit)}; costs: idle ${rec.costs.idle_cost_per_hour:g}/sandbox-hour, "
        f"${rec.costs.cold_start_cost:.6g}/cold start",
    ]
    lines += [f"  cost from data: {source}" for source in sources]
    lines += [f"  ASSUMPTION to set: {assumption}" for assumption in assumptions]
    return lines


def _plan_lines(rec: Recommendation) -> list[str]:
    chosen = rec.plan
    reach = {True: "reaches the target", False: "best reachable, BELOW the target"}
    floors: dict[int, PlanChoice] = {}
    for c in rec.candidates:  # per floor, its best cooldown
        best = floors.get(c.plan.warm_floor)
        if best is None or _best_plan([best, c]) is c:
            floors[c.plan.warm_floor] = c
    static = rec.static_pool
    lines = [
        plan_summary(rec),
        f"replayed over the observed claims: warm-hit {_pct(chosen.warm_hit)}, "
        f"{chosen.unclaimed_hours_per_day:.2f} unclaimed sandbox-hours/day, ${chosen.cost_per_day:.2f}/day "
        f"({reach[chosen.meets_target]})",
        "other floors replayed (the best cooldown for 0): "
        + (
            ", ".join(
                f"{f}: {_pct(c.warm_hit)} ${c.cost_per_day:.2f}/day"
                for f, c in sorted(floors.items())
                if c is not chosen
            )
            or "none (a larger floor only adds idle sandboxes)"
        ),
        f"for comparison, a static pool of {int(static.setting)} without KEDA (--emit warmpool): warm-hit "
        f"{_pct(static.warm_hit)}, ${static.cost_per_day:.2f}/day",
    ]
    return lines


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
        keda = emit == "all"
        pool = sandbox_warm_pool(
            rec,
            namespace=namespace,
            pool_name=pool_name,
            template=template or k8s_name(rec.agent),
            scaled_by_keda=keda,
        )
        docs.append(_comment(_pool_lines(rec, keda)) + yaml.safe_dump(pool, sort_keys=False))
    if emit in ("keda", "all"):
        obj = scaled_object(rec, namespace=namespace, scaler_address=scaler_address, pool_name=pool_name)
        docs.append(
            _comment(_keda_lines(rec, scaler_address, pool_name, namespace)) + yaml.safe_dump(obj, sort_keys=False)
        )
    header = _common_lines(rec) + (_plan_lines(rec) if emit != "warmpool" else [])
    return _comment(header) + "#\n" + "---\n".join(docs)


def _pool_lines(rec: Recommendation, scaled_by_keda: bool) -> list[str]:
    static = rec.static_pool
    reach = "" if static.meets_target else " (best reachable, BELOW the target)"
    if scaled_by_keda:
        return [
            plan_summary(rec),
            "spec.replicas is left out: the ScaledObject below owns it through the pool's scale subresource, and a",
            "re-apply with replicas would reset the autoscaled size (as Agent Sandbox's examples/keda-scale-to-zero)",
        ]
    return [
        f"a static pool without KEDA: spec.replicas {int(static.setting)}, the cheapest size whose replayed claims "
        f"find a ready sandbox {_pct(static.warm_hit)} of the time, ${static.cost_per_day:.2f}/day{reach}",
        "empty-pool fraction by size: "
        + ", ".join(f"{r.size}: {_pct(r.empty_fraction)}" for r in rec.idle.warm_pool[:12]),
    ]


def _keda_lines(rec: Recommendation, scaler_address: str, pool_name: str, namespace: str | None) -> list[str]:
    plan = rec.plan.plan
    floor = (
        "0: scale to zero is the cheaper plan at the target"
        if rec.scale_to_zero
        else f"{plan.warm_floor}: the cheapest floor at the target"
        if rec.plan.meets_target
        else f"{plan.warm_floor}: the best reachable floor, BELOW the target"
    )
    query = urlencode({k: v for k, v in trigger_metadata(rec, namespace).items() if k != "targetPerReplica"})
    lines = [
        plan_summary(rec),
        f"scales SandboxWarmPool {pool_name} (apply it without spec.replicas)",
        f"minReplicaCount / warmFloor {floor}",
        f"cooldownPeriod {int(plan.cooldown_s)} s"
        + (": how long after the last claim the pool goes to zero" if rec.scale_to_zero else ": never applies"),
        _window_line(rec),
        f"maxReplicaCount {plan.max_replicas}: the most the metric asked for over the observed claims",
        f"pollingInterval {int(plan.polling_s)} s: about one start-up time, within 5..30 s",
        "metric: the unclaimed sandboxes wanted, served live by agentmeter's external scaler",
        "without gRPC: a metrics-api trigger reading the same figure from the receiver's HTTP endpoint, e.g.",
        f"  url: http://{scaler_address.rpartition(':')[0]}:4318/v1/demand?{query}, valueLocation: value, "
        "targetValue: '1'",
    ]
    return lines


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
