"""Quota sizing (`analyze recommend --emit quota`): a ResourceQuota and a LimitRange for the agents' namespace,
from the concurrency observed there and what one sandbox requests.

- Concurrency: the namespace's agent runs as half-open intervals (analyzer/idle.py: `peak_concurrency`, the
  most runs at once; `p99_concurrency`, the level not exceeded 99 % of the busy time). Runs of every agent
  of the namespace together: their peaks need not coincide, so the namespace's own peak, not a sum.
- One sandbox's requests: its SandboxTemplate's containers and sidecars (analyzer/sandbox_cost.py
  `template_requests`).
- ResourceQuota `hard`: requests.cpu, requests.memory and pods = peak x one sandbox (+ `--quota-headroom`
  percent, rounded up): the busiest moment observed is admitted, a runaway fan-out past it is refused. The
  p99 figure is given beside it, for a tighter quota that queues the rarest peaks.
- LimitRange: a quota on requests refuses pods whose containers state none; a container that states none
  gets the sandbox's main container's requests (`defaultRequest`), so it is admitted and counted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import yaml

from analyzer.dataset import AnalyzerError, read_yaml_file
from analyzer.idle import GroupIdle
from analyzer.sandbox_cost import GIB, parse_quantity, template_requests


@dataclass(frozen=True)
class SandboxRequests:
    cpu: float  # vCPUs, the whole pod (containers and sidecars)
    memory_gib: float
    main_cpu: float  # the first container's own requests
    main_memory_gib: float
    template: Path


def sandbox_requests(path: Path) -> SandboxRequests:
    cpu, memory = template_requests(path)
    doc = read_yaml_file(path, "SandboxTemplate")
    (main, *_) = doc["spec"]["podTemplate"]["spec"]["containers"]
    requests = (main.get("resources") or {}).get("requests") or {}
    where = f"{path}: container {main.get('name')!r}"
    return SandboxRequests(
        cpu,
        memory,
        parse_quantity(requests.get("cpu", 0), f"{where} cpu request"),
        parse_quantity(requests.get("memory", 0), f"{where} memory request") / GIB,
        path,
    )


def millicores(cpu: float) -> str:
    return f"{math.ceil(round(cpu * 1000, 6))}m"


def mebibytes(gib: float) -> str:
    return f"{math.ceil(round(gib * 1024, 6))}Mi"


def quota_yaml(
    namespace: str, idle: GroupIdle, agents: list[GroupIdle], sandbox: SandboxRequests, headroom_percent: float = 0
) -> str:
    """The ResourceQuota and LimitRange, each headed by the numbers behind it."""
    if idle.peak_concurrency < 1:
        raise AnalyzerError(f"no concurrent runs in namespace {namespace!r}: nothing to size a quota from")
    if sandbox.cpu <= 0 or sandbox.memory_gib <= 0:
        raise AnalyzerError(f"{sandbox.template}: the sandbox requests no cpu or no memory: a quota cannot count it")
    sized = math.ceil(idle.peak_concurrency * (1 + headroom_percent / 100))
    meta = {"namespace": namespace, "labels": {"app.kubernetes.io/managed-by": "agentmeter"}}
    quota = {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {"name": "agent-sandboxes", **meta},
        "spec": {
            "hard": {
                "pods": str(sized),
                "requests.cpu": millicores(sized * sandbox.cpu),
                "requests.memory": mebibytes(sized * sandbox.memory_gib),
            }
        },
    }
    limits = {
        "apiVersion": "v1",
        "kind": "LimitRange",
        "metadata": {"name": "agent-sandboxes", **meta},
        "spec": {
            "limits": [
                {
                    "type": "Container",
                    "defaultRequest": {
                        "cpu": millicores(sandbox.main_cpu),
                        "memory": mebibytes(sandbox.main_memory_gib),
                    },
                }
            ]
        },
    }
    days = idle.window_s / 86_400
    header = [
        f"agentmeter quota for namespace {namespace!r}: {idle.arrivals} agent runs over {days:.2f} days",
        f"concurrency of the namespace's runs: peak {idle.peak_concurrency}, p99 {idle.p99_concurrency} "
        f"(time-weighted over the busy time), busy {idle.busy_fraction:.2%} of the time",
        *(f"  agent {a.group}: peak {a.peak_concurrency}, p99 {a.p99_concurrency}, {a.arrivals} runs" for a in agents),
        f"one sandbox ({sandbox.template.name}) requests {millicores(sandbox.cpu)} CPU and "
        f"{mebibytes(sandbox.memory_gib)} memory (containers and sidecars)",
    ]
    quota_lines = [
        f"hard = peak {idle.peak_concurrency}"
        + (f" + {headroom_percent:g}% headroom = {sized}" if headroom_percent else "")
        + f" sandboxes x ({millicores(sandbox.cpu)} CPU, {mebibytes(sandbox.memory_gib)}): the busiest moment "
        "observed is admitted, a fan-out past it is refused",
        f"at p99 ({idle.p99_concurrency} sandboxes) it would be {millicores(idle.p99_concurrency * sandbox.cpu)} "
        f"CPU, {mebibytes(idle.p99_concurrency * sandbox.memory_gib)}: tighter, the rarest peaks then wait",
    ]
    limit_lines = [
        "a container that states no requests gets the sandbox's main container's "
        f"({millicores(sandbox.main_cpu)} CPU, {mebibytes(sandbox.main_memory_gib)}), so the quota counts it",
    ]
    return (
        _comment(header)
        + "#\n"
        + _comment(quota_lines)
        + yaml.safe_dump(quota, sort_keys=False)
        + "---\n"
        + _comment(limit_lines)
        + yaml.safe_dump(limits, sort_keys=False)
    )


def _comment(lines: list[str]) -> str:
    return "".join(f"# {line}\n" for line in lines)
