"""`analyze gpu`: GPU slice utilization, idle slice-hours and their cost, by slice, node, namespace, pod,
agent or task."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from analyzer.cli_options import DataOption, FormatOption, GpuPricesOption, SinceOption, UntilOption
from analyzer.dataset import open_dataset
from analyzer.gpu import REPORT_COLUMNS, gpu_report
from analyzer.output import OutputFormat, TableLayout, render
from analyzer.timeparse import TimeRange

# left out first when a terminal is too narrow for every column (money and slice-hours stay)
OPTIONAL = ("activity_source", "profile", "slices", "utilization", "busy_slice_hours", "idle_slice_hours")


class GpuGrouping(StrEnum):
    slice = "slice"
    node = "node"
    namespace = "namespace"
    pod = "pod"
    agent = "agent"
    task = "task"


def gpu(
    data: DataOption = None,
    by: Annotated[GpuGrouping, typer.Option("--by", help="Group rows by this key.")] = GpuGrouping.slice,
    since: SinceOption = None,
    until: UntilOption = None,
    gpu_prices: GpuPricesOption = None,
    fmt: FormatOption = OutputFormat.table,
) -> None:
    """Allocated, busy and idle GPU slice-hours, utilization, cost and idle cost.

    allocated_cost_usd counts slice time held, idle included (= busy_cost_usd + idle_cost_usd); `analyze cost`'s
    gpu_busy_cost_usd is the busy time charged to calls without a token price (analyzer/figures.py).
    Busy time comes from DCGM_FI_PROF_GR_ENGINE_ACTIVE (or, with no metrics, the pod's inference spans:
    see the activity_source column). --by agent / task shares each slice's busy time among the inference
    spans on its pod; time no span covers shows as the group '-'.
    """
    window = TimeRange.parse(since, until)
    dataset = open_dataset(data)
    rows = gpu_report(dataset.con, by.value, since=window.since, until=window.until, gpu_prices_file=gpu_prices)
    render(
        rows,
        fmt,
        layout=TableLayout(optional=OPTIONAL),
        title=f"GPU slices by {by.value}",
        columns=[by.value, *REPORT_COLUMNS],
        totals=(
            "allocated_slice_hours",
            "busy_slice_hours",
            "idle_slice_hours",
            "allocated_cost_usd",
            "busy_cost_usd",
            "idle_cost_usd",
        ),
        empty=None
        if rows
        else "no GPU slice allocations"
        + (f" {window.describe()}" if not window.is_open else "")
        + " in the dataset (the receiver's kubelet poller writes them: --podresources-socket)",
    )


def register(app: typer.Typer) -> None:
    app.command("gpu")(gpu)
