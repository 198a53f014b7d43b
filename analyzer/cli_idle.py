"""`analyze idle` (idle-time curves per group) and `analyze recommend` (KEDA / SandboxWarmPool YAML)."""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from analyzer.cli_options import DataOption, FormatOption, GpuPricesOption, SinceOption, UntilOption
from analyzer.dataset import AnalyzerError, open_dataset
from analyzer.idle import analyze_idle
from analyzer.output import OutputFormat, TableLayout, render
from analyzer.quota import quota_yaml, sandbox_requests
from analyzer.recommend import DEFAULT_SCALER_ADDRESS, emit_yaml, recommend_agent
from analyzer.recommend import Emit as YamlEmit
from analyzer.sandbox_cost import DEFAULT_CPU_PRICE, DEFAULT_IDLE_COST_PER_HOUR, DEFAULT_MEMORY_PRICE
from analyzer.timeparse import TimeRange, parse_duration

ColdStartOption = Annotated[
    str | None,
    typer.Option(
        "--cold-start",
        help="Sandbox start-up time (8s, 1m). Default: p90 of the group's 'sandbox.startup' spans, else 8s.",
    ),
]


# left out first when a terminal is too narrow for every column
IDLE_LAYOUT = TableLayout(
    optional=("arrivals_per_day", "p99_concurrency", "cold_start_s", "p99_gap_s", "peak_concurrency", "busy_fraction")
)


class GroupBy(StrEnum):
    agent = "agent"
    service = "service"
    namespace = "namespace"


class Emit(StrEnum):
    keda = "keda"
    warmpool = "warmpool"
    all = "all"
    quota = "quota"


# the documents each --emit writes (quota is written by its own generator)
YAML_EMITS: dict[Emit, YamlEmit] = {Emit.keda: "keda", Emit.warmpool: "warmpool", Emit.all: "all"}


def idle(
    data: DataOption = None,
    by: Annotated[GroupBy, typer.Option(help="Group agent runs by agent name, service or namespace.")] = GroupBy.agent,
    since: SinceOption = None,
    until: UntilOption = None,
    cold_start: ColdStartOption = None,
    fmt: FormatOption = OutputFormat.table,
) -> None:
    """Idle gaps, busy fraction and concurrency per group; in json also the survival, cooldown and warm-pool curves.

    The idle gap of a run is the time from the moment its group last went idle (every earlier run ended)
    to its arrival, 0 if a run was still in flight.
    """
    window = TimeRange.parse(since, until)
    groups = analyze_idle(
        open_dataset(data),
        by=by.value,
        since=window.since,
        until=window.until,
        cold_start_s=parse_duration(cold_start) if cold_start else None,
    )
    if fmt is OutputFormat.json:
        json.dump([{**g.row(), "curves": g.curves()} for g in groups], sys.stdout, indent=2)
        sys.stdout.write("\n")
        return
    render([g.row() for g in groups], fmt, title=f"Idle time by {by.value}", totals=("arrivals",), layout=IDLE_LAYOUT,
           empty=None if groups else f"no agent runs {window.describe()}".rstrip() + " in the dataset")  # fmt: skip


def recommend_command(
    agent: Annotated[
        str | None, typer.Option("--agent", help="Agent name (agent_name of its runs); not with --emit quota.")
    ] = None,
    data: DataOption = None,
    target_warm_hit: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Fraction of runs that should find a warm sandbox.")
    ] = 0.99,
    cold_start: ColdStartOption = None,
    idle_cost_per_hour: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            help="Cost of one idle sandbox for an hour. Default: from --sandbox-template's requests and the GPU "
            f"slices its pods held in the dataset, else ${DEFAULT_IDLE_COST_PER_HOUR:g} (named as an assumption).",
        ),
    ] = None,
    cold_start_cost: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            help="Cost of one run waiting for a cold start. Default: the sandbox's cost over one start-up time.",
        ),
    ] = None,
    sandbox_template: Annotated[
        Path | None, typer.Option(help="The pool's SandboxTemplate YAML: its requests price an idle sandbox.")
    ] = None,
    cpu_price: Annotated[
        float | None, typer.Option(min=0.0, help=f"Price per vCPU-hour (default ${DEFAULT_CPU_PRICE:g}, assumed).")
    ] = None,
    memory_price: Annotated[
        float | None, typer.Option(min=0.0, help=f"Price per GiB-hour (default ${DEFAULT_MEMORY_PRICE:g}, assumed).")
    ] = None,
    gpu_prices: GpuPricesOption = None,
    namespace: Annotated[
        str | None, typer.Option(help="Only runs in this namespace; also the namespace of the emitted objects.")
    ] = None,
    since: SinceOption = None,
    until: UntilOption = None,
    emit: Annotated[
        Emit,
        typer.Option(
            help="all: a pool scaled by KEDA and its ScaledObject; keda: the ScaledObject only; "
            "warmpool: a static pool without KEDA; quota: a ResourceQuota and LimitRange for --namespace from its "
            "peak concurrency x --sandbox-template's requests."
        ),
    ] = Emit.all,
    scaler_address: Annotated[
        str, typer.Option(help="HOST:PORT of agentmeter's KEDA external scaler.")
    ] = DEFAULT_SCALER_ADDRESS,
    template: Annotated[
        str | None, typer.Option(help="SandboxTemplate name of the warm pool (default: the agent's name).")
    ] = None,
    quota_headroom: Annotated[
        float, typer.Option(min=0.0, help="With --emit quota: percent added to the observed peak.")
    ] = 0.0,
) -> None:
    """YAML for an Agent Sandbox SandboxWarmPool scaled by a KEDA ScaledObject, with the numbers behind each choice.

    Replays the agent's runs through each plan and keeps the cheapest (idle + cold-start cost) that reaches
    --target-warm-hit.
    """
    window = TimeRange.parse(since, until)
    if emit is Emit.quota:
        if not namespace or sandbox_template is None:
            raise AnalyzerError("--emit quota needs --namespace (the agents' namespace) and --sandbox-template")
        sys.stdout.write(_quota(data, namespace, window, sandbox_template, quota_headroom))
        return
    if not agent:
        raise AnalyzerError("--agent is required (except with --emit quota)")
    rec = recommend_agent(
        open_dataset(data),
        agent,
        target_warm_hit=target_warm_hit,
        since=window.since,
        until=window.until,
        namespace=namespace,
        cold_start_s=parse_duration(cold_start) if cold_start else None,
        idle_cost_per_hour=idle_cost_per_hour,
        cold_start_cost=cold_start_cost,
        sandbox_template=sandbox_template,
        cpu_price=cpu_price,
        memory_price=memory_price,
        gpu_prices_file=gpu_prices,
    )
    assert emit is not Emit.quota
    sys.stdout.write(
        emit_yaml(rec, YAML_EMITS[emit], namespace=namespace, scaler_address=scaler_address, template=template)
    )


def _quota(data: Path | None, namespace: str, window: TimeRange, template: Path, headroom: float) -> str:
    sandbox = sandbox_requests(template)
    ds = open_dataset(data)
    found = analyze_idle(ds, by="namespace", since=window.since, until=window.until, group=namespace)
    if not found:
        raise AnalyzerError(f"no agent runs in namespace {namespace!r} in the dataset")
    agents = analyze_idle(ds, by="agent", since=window.since, until=window.until, namespace=namespace)
    return quota_yaml(namespace, found[0], agents, sandbox, headroom)


def register(app: typer.Typer) -> None:
    app.command("idle")(idle)
    app.command("recommend")(recommend_command)
