"""What an idle sandbox and a cold start cost, from data where it can be found, else named assumptions.

`analyze recommend` weighs idle sandbox-hours against cold starts. The figures, first found wins:

- idle cost per sandbox-hour:
  1. `--idle-cost-per-hour` as given;
  2. the sandbox's own requests, read from its SandboxTemplate (`--sandbox-template FILE`: the pod template's
     containers and sidecars, `spec.podTemplate.spec`, extensions.agents.x-k8s.io), priced per vCPU-hour and
     GiB-hour (`--cpu-price`, `--memory-price`: defaults are assumptions, named as such), plus
  3. the GPU slices the agent's pods held in the dataset (gpu_allocations: the pods its runs ran on), priced
     as `analyze gpu` prices them (`--gpu-prices`): the median over those pods of their slices' price;
  4. otherwise the assumption DEFAULT_IDLE_COST_PER_HOUR, named in the output as one to set.
- cold-start cost: `--cold-start-cost` as given, else the sandbox's cost over one start-up time (the capacity
  a cold start burns before it is useful). The wait itself is not priced: `--target-warm-hit` stands for it.

Quantities follow Kubernetes' resource.Quantity (k8s.io/apimachinery pkg/api/resource/quantity.go): decimal
suffixes n u m "" k M G T P E, binary Ki Mi Gi Ti Pi Ei, and exponents (1e3).
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from analyzer.analysis import Analysis
from analyzer.dataset import AnalyzerError, Dataset, read_yaml_file
from analyzer.gpu import GpuPrices, install_gpu_views

DEFAULT_IDLE_COST_PER_HOUR = 0.10
DEFAULT_CPU_PRICE = 0.04  # per vCPU-hour: an assumption, typical of on-demand cloud list prices
DEFAULT_MEMORY_PRICE = 0.005  # per GiB-hour: the same
GIB = 1024**3
_QUANTITY = re.compile(r"^([+-]?(?:\d+\.?\d*|\.\d+))(?:([eE][+-]?\d+)|(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E))?$")
_SUFFIX = {
    "n": 1e-9, "u": 1e-6, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
}  # fmt: skip


@dataclass(frozen=True)
class SandboxCosts:
    idle_cost_per_hour: float
    cold_start_cost: float
    sources: list[str] = field(default_factory=list)  # where each figure came from, for the output
    assumptions: list[str] = field(default_factory=list)  # figures nobody measured: the user should set them


def parse_quantity(text: Any, where: str) -> float:
    """A Kubernetes quantity ('500m', '2', '512Mi', '1e9') as a number."""
    match = _QUANTITY.match(str(text).strip())
    if match is None:
        raise AnalyzerError(f"{where}: {text!r} is not a Kubernetes quantity (e.g. 500m, 2, 512Mi, 1Gi)")
    number, exponent, suffix = match.groups()
    value = float(number) * (10 ** int(exponent[1:]) if exponent else _SUFFIX.get(suffix, 1))
    if value < 0:
        raise AnalyzerError(f"{where}: {text!r} must not be negative")
    return value


def template_requests(path: Path) -> tuple[float, float]:
    """(vCPUs, GiB) the SandboxTemplate's pod requests: its containers plus its sidecars (init containers with
    restartPolicy Always, which run beside them)."""
    doc = read_yaml_file(path, "SandboxTemplate")
    if not isinstance(doc, dict) or doc.get("kind") != "SandboxTemplate":
        raise AnalyzerError(f"{path}: expected a SandboxTemplate (extensions.agents.x-k8s.io)")
    pod = ((doc.get("spec") or {}).get("podTemplate") or {}).get("spec") or {}
    containers = list(pod.get("containers") or [])
    containers += [c for c in pod.get("initContainers") or [] if c.get("restartPolicy") == "Always"]
    if not containers:
        raise AnalyzerError(f"{path}: spec.podTemplate.spec.containers is empty")
    cpu = memory = 0.0
    for container in containers:
        requests = (container.get("resources") or {}).get("requests") or {}
        where = f"{path}: container {container.get('name')!r}"
        cpu += parse_quantity(requests.get("cpu", 0), f"{where} cpu request")
        memory += parse_quantity(requests.get("memory", 0), f"{where} memory request") / GIB
    return cpu, memory


def agent_gpu_costs(ds: Dataset, prices: GpuPrices) -> dict[str, tuple[float, int]]:
    """Per agent whose pods held GPU slices: (median price per hour of the slices one of its pods held, pods).
    Every agent at once: the GPU tables are built once (~0.2 s at 100 k tasks), and a long-lived process keeps
    the answer per dataset state (the console's Agents page)."""
    con = ds.con
    install_gpu_views(con, prices=prices)
    rows = con.execute(
        """
        WITH pods AS (SELECT DISTINCT agent_name AS agent, k8s_namespace AS namespace, k8s_pod AS pod FROM agent_pods),
        held AS (
            SELECT DISTINCT pods.agent, h.namespace, h.pod, h.slice_id
            FROM gpu_holdings AS h JOIN pods USING (namespace, pod)
        )
        SELECT agent, sum(p.usd_per_hour) FROM held JOIN gpu_slice_prices AS p USING (slice_id)
        GROUP BY agent, namespace, pod
        """
    ).fetchall()
    by_agent: dict[str, list[float]] = {}
    for agent, usd_per_hour in rows:
        by_agent.setdefault(agent, []).append(usd_per_hour)
    return {agent: (statistics.median(pods), len(pods)) for agent, pods in by_agent.items()}


def kept_agent_gpu_costs(analysis: Analysis) -> dict[str, tuple[float, int]]:
    """`agent_gpu_costs` at the analysis's GPU prices, once per Analysis: the same whatever the window, so a
    long-lived process computes it once per dataset state (`analyze serve` while preparing the state,
    analyzer/snapshot.py; the console's Agents page reads it)."""
    file = analysis.gpu_prices_file
    return analysis.memo(("agent_gpu_costs", file), lambda: agent_gpu_costs(analysis.dataset, GpuPrices.load(file)))


def sandbox_costs(
    ds: Dataset,
    agent: str,
    startup_s: float,
    *,
    idle_cost_per_hour: float | None = None,
    cold_start_cost: float | None = None,
    sandbox_template: Path | None = None,
    cpu_price: float | None = None,
    memory_price: float | None = None,
    gpu_prices: GpuPrices | None = None,
    gpu_costs: Mapping[str, tuple[float, int]] | None = None,
) -> SandboxCosts:
    """`gpu_costs`: `agent_gpu_costs` of the dataset at `gpu_prices`, when the caller keeps it (else computed)."""
    for name, value in (
        ("--idle-cost-per-hour", idle_cost_per_hour),
        ("--cold-start-cost", cold_start_cost),
        ("--cpu-price", cpu_price),
        ("--memory-price", memory_price),
    ):
        if value is not None and value < 0:
            raise AnalyzerError(f"{name} must be >= 0")
    sources: list[str] = []
    assumptions: list[str] = []
    if idle_cost_per_hour is not None:
        idle = idle_cost_per_hour
        sources.append(f"idle ${idle:g}/sandbox-hour: --idle-cost-per-hour")
    else:
        idle, parts = 0.0, []
        if sandbox_template is not None:
            cpu, memory = template_requests(sandbox_template)
            cpu_usd = DEFAULT_CPU_PRICE if cpu_price is None else cpu_price
            memory_usd = DEFAULT_MEMORY_PRICE if memory_price is None else memory_price
            idle += cpu * cpu_usd + memory * memory_usd
            parts.append(
                f"requests of {sandbox_template.name} ({cpu:g} vCPU x ${cpu_usd:g} + {memory:g} GiB x ${memory_usd:g})"
            )
            if cpu_price is None:
                assumptions.append(f"--cpu-price ${DEFAULT_CPU_PRICE:g}/vCPU-hour (assumed: set your price)")
            if memory_price is None:
                assumptions.append(f"--memory-price ${DEFAULT_MEMORY_PRICE:g}/GiB-hour (assumed: set your price)")
        if gpu_costs is None:
            gpu_costs = agent_gpu_costs(ds, gpu_prices or GpuPrices())
        gpu = gpu_costs.get(agent)
        if gpu is not None:
            idle += gpu[0]
            parts.append(f"GPU slices of its pods in the dataset (median of {gpu[1]} pods: ${gpu[0]:g})")
        if parts:
            sources.append(f"idle ${idle:g}/sandbox-hour: " + " + ".join(parts))
        else:
            idle = DEFAULT_IDLE_COST_PER_HOUR
            assumptions.append(
                f"idle cost ${idle:g}/sandbox-hour (assumed: set --idle-cost-per-hour, or --sandbox-template and "
                "prices, or record its pods' GPU slices)"
            )
    if cold_start_cost is not None:
        cold = cold_start_cost
        sources.append(f"cold start ${cold:g}: --cold-start-cost")
    else:
        cold = idle * startup_s / 3600
        sources.append(
            f"cold start ${cold:.6g}: the sandbox's cost over its {startup_s:g} s start-up "
            "(the wait itself is priced by --target-warm-hit, or set --cold-start-cost)"
        )
    return SandboxCosts(idle, cold, sources, assumptions)
