"""`analyze gpu`: GPU slice utilization, idle slice-hours and their cost, by slice, node, namespace, pod,
agent or task."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from analyzer.dataset import open_dataset
from analyzer.gpu import REPORT_COLUMNS, gpu_report
from analyzer.output import OutputFormat, render
from analyzer.timeparse import parse_time


class GpuGrouping(StrEnum):
    slice = "slice"
    node = "node"
    namespace = "namespace"
    pod = "pod"
    agent = "agent"
    task = "task"


def gpu(
    data: Annotated[Path | None, typer.Option("--data", help="Dataset directory (default: $AGENTMETER_DATA).")] = None,
    by: Annotated[GpuGrouping, typer.Option("--by", help="Group rows by this key.")] = GpuGrouping.slice,
    since: Annotated[str | None, typer.Option("--since", help="Window start: ISO date/time or 7d, 24h.")] = None,
    until: Annotated[str | None, typer.Option("--until", help="Window end: ISO date/time or 7d, 24h.")] = None,
    gpu_prices: Annotated[
        Path | None,
        typer.Option(
            "--gpu-prices",
            help="YAML of USD per slice-hour by MIG profile (defaults: analyzer/gpu_prices.example.yaml).",
        ),
    ] = None,
    fmt: Annotated[OutputFormat, typer.Option("--format", help="table, json or csv.")] = OutputFormat.table,
) -> None:
    """Allocated, busy and idle GPU slice-hours, utilization, cost and idle cost.

    Busy time comes from DCGM_FI_PROF_GR_ENGINE_ACTIVE (or, with no metrics, the pod's inference spans:
    see the activity_source column). --by agent / task shares each slice's busy time among the inference
    spans on its pod; time no span covers shows as the group '-'.
    """
    dataset = open_dataset(data)
    rows = gpu_report(
        dataset.con, by.value, since=parse_time(since), until=parse_time(until), gpu_prices_file=gpu_prices
    )
    render(
        rows,
        fmt,
        title=f"GPU slices by {by.value}",
        columns=[by.value, *REPORT_COLUMNS],
        totals=(
            "allocated_slice_hours",
            "busy_slice_hours",
            "idle_slice_hours",
            "cost_usd",
            "idle_cost_usd",
            "busy_cost_usd",
        ),
    )


def register(app: typer.Typer) -> None:
    app.command("gpu")(gpu)
