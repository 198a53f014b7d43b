"""`analyze idle` (idle-time curves per group) and `analyze recommend` (KEDA / SandboxWarmPool YAML)."""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from typing import Annotated

import typer

from analyzer.cli_options import DataOption, FormatOption, SinceOption, UntilOption
from analyzer.dataset import AnalyzerError, open_dataset
from analyzer.idle import analyze_idle
from analyzer.output import OutputFormat, render
from analyzer.recommend import DEFAULT_SCALER_ADDRESS, Costs, emit_yaml, recommend
from analyzer.timeparse import TimeRange, parse_duration

ColdStartOption = Annotated[
    str | None,
    typer.Option(
        "--cold-start",
        help="Sandbox start-up time (8s, 1m). Default: p90 of the group's 'sandbox.startup' spans, else 8s.",
    ),
]


class GroupBy(StrEnum):
    agent = "agent"
    service = "service"
    namespace = "namespace"


class Emit(StrEnum):
    keda = "keda"
    warmpool = "warmpool"
    all = "all"


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
    render([g.row() for g in groups], fmt, title=f"Idle time by {by.value}", totals=("arrivals",),
           empty=None if groups else f"no agent runs {window.describe()}".rstrip() + " in the dataset")  # fmt: skip


def recommend_command(
    agent: Annotated[str, typer.Option("--agent", help="Agent name (agent_name of its runs).")],
    data: DataOption = None,
    target_warm_hit: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Fraction of runs that should find a warm sandbox.")
    ] = 0.99,
    cold_start: ColdStartOption = None,
    idle_cost_per_hour: Annotated[float, typer.Option(min=0.0, help="Cost of one idle sandbox for an hour.")] = 0.10,
    cold_start_cost: Annotated[float, typer.Option(min=0.0, help="Cost of one run waiting for a cold start.")] = 0.01,
    namespace: Annotated[
        str | None, typer.Option(help="Only runs in this namespace; also the namespace of the emitted objects.")
    ] = None,
    since: SinceOption = None,
    until: UntilOption = None,
    emit: Annotated[Emit, typer.Option(help="keda, warmpool, or all (the ScaledObject scales the pool).")] = Emit.all,
    scaler_address: Annotated[
        str, typer.Option(help="HOST:PORT of agentmeter's KEDA external scaler.")
    ] = DEFAULT_SCALER_ADDRESS,
    template: Annotated[
        str | None, typer.Option(help="SandboxTemplate name of the warm pool (default: the agent's name).")
    ] = None,
) -> None:
    """YAML for a KEDA ScaledObject and an Agent Sandbox SandboxWarmPool, with the numbers behind each choice.

    Minimises idle cost + cold-start cost among the settings that reach --target-warm-hit.
    """
    window = TimeRange.parse(since, until)
    groups = analyze_idle(
        open_dataset(data),
        by="agent",
        since=window.since,
        until=window.until,
        namespace=namespace,
        group=agent,
        cold_start_s=parse_duration(cold_start) if cold_start else None,
        with_scale_up_gaps=True,
    )
    if not groups:
        where = f" in namespace {namespace}" if namespace else ""
        raise AnalyzerError(f"no runs of agent {agent!r}{where} in the dataset")
    rec = recommend(groups[0], target_warm_hit, Costs(idle_cost_per_hour, cold_start_cost))
    sys.stdout.write(emit_yaml(rec, emit.value, namespace=namespace, scaler_address=scaler_address, template=template))


def register(app: typer.Typer) -> None:
    app.command("idle")(idle)
    app.command("recommend")(recommend_command)
