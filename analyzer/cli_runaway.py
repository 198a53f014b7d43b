"""`analyze runaway`: the tasks that ran away (spawn loops, retry storms, tool loops, cost), after the fact."""

from __future__ import annotations

from typing import Annotated

import typer

from analyzer.analysis import Analysis
from analyzer.cli_options import DataOption, FormatOption, PricesOption, SinceOption, UntilOption
from analyzer.output import OutputFormat, TableLayout, render
from analyzer.runaway import COLUMNS, runaway_tasks
from analyzer.task_queries import SHORT_ID
from analyzer.timeparse import TimeRange
from collector_ext.traces.runaway import RunawayThresholds

DEFAULTS = RunawayThresholds()


def runaway(
    data: DataOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
    max_subagents: Annotated[
        int, typer.Option(min=1, help="Sub-agent traces linked under one task (fan-out).")
    ] = DEFAULTS.subagents,
    max_depth: Annotated[
        int, typer.Option(min=1, help="Links from a task's top to its deepest sub-agent.")
    ] = DEFAULTS.depth,
    max_tool_repeats: Annotated[
        int, typer.Option(min=1, help="Calls of one tool with the same arguments in one task.")
    ] = DEFAULTS.tool_repeats,
    max_llm_calls: Annotated[
        int, typer.Option(min=1, help="LLM and embedding calls in one task.")
    ] = DEFAULTS.llm_calls,
    max_failed_calls: Annotated[
        int, typer.Option(min=1, help="LLM and embedding calls ending in error in one task (retry storms).")
    ] = DEFAULTS.failed_calls,
    max_cost_usd: Annotated[float, typer.Option(min=0.0, help="Token cost of one task, USD.")] = DEFAULTS.cost_usd,
    history_factor: Annotated[
        float, typer.Option(min=1.0, help="Flag past this many times the p99 of the root agent's previous tasks.")
    ] = DEFAULTS.history_factor,
    history_min_tasks: Annotated[
        int, typer.Option(min=1, help="Previous tasks of an agent needed before its history sets limits.")
    ] = DEFAULTS.history_min_tasks,
    prices: PricesOption = None,
    fmt: FormatOption = OutputFormat.table,
) -> None:
    """Tasks past a limit, one row per task and reason: subagents, depth, tool_repeats, llm_calls, failed_calls,
    cost_usd. The limit is the threshold, or lower once the root agent has history: history_factor x the
    p99 of its previous tasks (never below threshold / history_factor). The receiver flags the same tasks
    while they run (agentmeter_runaway_tasks, `collector-ext serve --runaway-max-...`)."""
    window = TimeRange.parse(since, until)
    thresholds = RunawayThresholds(
        subagents=max_subagents,
        depth=max_depth,
        tool_repeats=max_tool_repeats,
        llm_calls=max_llm_calls,
        failed_calls=max_failed_calls,
        cost_usd=max_cost_usd,
        history_factor=history_factor,
        history_min_tasks=history_min_tasks,
    )
    analysis = Analysis.open(data, prices)
    rows = [r.row() for r in runaway_tasks(analysis, thresholds, window)]
    layout = TableLayout(
        optional=("task_start", "basis"), short=("task_id",), short_digits=SHORT_ID, times=("task_start",)
    )
    empty = None if rows else f"no runaway tasks {window.describe()}".rstrip() + " in the dataset"
    render(rows, fmt, title="Runaway tasks", columns=COLUMNS, layout=layout, empty=empty)


def register(app: typer.Typer) -> None:
    app.command("runaway")(runaway)
