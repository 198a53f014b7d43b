"""`analyze tasks` and `analyze task`: tasks (an orchestrator and every sub-agent it spawned) and their trees.

The queries live in analyzer/task_queries.py (the API and the report call them too); `analyze task` answers
from the task's own traces (analyzer/task_scope.py), so it stays fast on a big dataset.
"""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.tree import Tree

from analyzer.analysis import Analysis
from analyzer.cli_options import DataOption, FormatOption, GpuPricesOption, PricesOption, SinceOption, UntilOption
from analyzer.dataset import AnalyzerError
from analyzer.output import (
    OutputFormat,
    TableLayout,
    console_width,
    money,
    plain_tree,
    render,
    render_result,
    say_empty,
)
from analyzer.task_queries import (
    LIST_COLUMNS,
    SHORT_ID,
    STATS_COLUMNS,
    STATS_KEYS,
    TASK_SORTS,
    TaskQuery,
    task_listing,
    task_stats,
    task_tree,
)
from analyzer.task_scope import open_task
from analyzer.timeparse import TimeRange

# left out first when a terminal is too narrow for every column (a blank column before any other)
OPTIONAL = (
    "cache_write_tokens",
    "reasoning_tokens",
    "reported_cost_usd",
    "cache_read_tokens",
    "agents",
    "agent_runs",
    "max_depth",
    "end",
    "gpu_busy_cost_usd",
    "token_cost_usd",
    "tool_calls",
    "stitch_state",
    "traces",
    "output_tokens",
    "input_tokens",
    "direct_cost_usd",
    "status",
    "unpriced_calls",
    "calls_without_usage",  # the last to go (the tree and `analyze cost` say it too)
)
SHORT_NOTE = (
    f"task_id: the first {SHORT_ID} hex digits (`analyze task` takes them); start/end in UTC; json/csv: whole values"
)
TOTALS = ("traces", "agent_runs", "tool_calls", "llm_calls", "input_tokens", "output_tokens", "cache_read_tokens",
          "cache_write_tokens", "reasoning_tokens", "unpriced_calls", "calls_without_usage", "token_cost_usd",
          "gpu_busy_cost_usd",
          "inclusive_cost_usd", "direct_cost_usd", "reported_cost_usd")  # fmt: skip


class TreeFormat(StrEnum):
    tree = "tree"
    json = "json"


class Status(StrEnum):
    failed = "failed"
    ok = "ok"


def tasks_command(
    data: DataOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
    agent: Annotated[str | None, typer.Option(help="Only tasks with an agent run of this name.")] = None,
    status: Annotated[Status | None, typer.Option(help="Only failed tasks (root span in error), or only ok.")] = None,
    top: Annotated[
        int | None, typer.Option(min=1, help="Only the N most expensive tasks (then most tokens), first.")
    ] = None,
    offset: Annotated[int, typer.Option(min=0, help="Skip this many tasks first (paging).")] = 0,
    sort: Annotated[
        str | None,
        typer.Option(
            help=f"Order by {', '.join(TASK_SORTS)} (agent: the root agent; depth: deepest agent run). "
            "Default: cost with --top, else start.",
        ),
    ] = None,
    desc: Annotated[
        bool | None,
        typer.Option(
            "--desc/--asc",
            help="Direction (default: most first for cost, calls, depth; else ascending).",
            show_default=False,
        ),
    ] = None,
    min_cost: Annotated[
        float | None, typer.Option(min=0.0, help="Only tasks whose inclusive cost is known and at least this (USD).")
    ] = None,
    min_depth: Annotated[int | None, typer.Option(min=0, help="Only tasks whose agent runs nest this deep.")] = None,
    by: Annotated[
        str | None,
        typer.Option(
            "--by",
            help=f"Per {', '.join(STATS_KEYS)} (agent: the task's root agent): tasks, failed tasks, "
            "mean / p50 / p95 / max task cost, what failed tasks cost.",
        ),
    ] = None,
    prices: PricesOption = None,
    gpu_prices: GpuPricesOption = None,
    fmt: FormatOption = OutputFormat.table,
) -> None:
    """One row per task: the top trace and every sub-agent trace linked under it, tokens counted once.

    inclusive_cost_usd: the whole task (every sub-agent), the same figure as `analyze cost --by task`;
    direct_cost_usd: the task's own (top) trace only. Without --top, tasks come by start time.
    """
    window = TimeRange.parse(since, until)
    analysis = Analysis.open(data, prices, gpu_prices)
    if by is not None:
        if (
            agent
            or status
            or top
            or offset
            or sort
            or desc is not None
            or min_cost is not None
            or min_depth is not None
        ):
            raise AnalyzerError(
                "--by summarises every task of the time range: drop --agent, --status, --top, --offset, --sort, "
                "--desc/--asc, --min-cost, --min-depth"
            )
        rows = task_stats(analysis, by, window)
        empty = analysis.why_empty("tasks", window) if not rows else None
        render(rows, fmt, title=f"Task cost by {by}", columns=[by, *STATS_COLUMNS], empty=empty,
               totals=("tasks", "failed_tasks", "failed_cost_usd", "inclusive_cost_usd", "unpriced_calls",
                       "calls_without_usage"))  # fmt: skip
        return
    query = TaskQuery(
        window=window,
        agent=agent,
        status=status.value if status else None,
        sort=sort or ("cost" if top else "start"),  # type: ignore[arg-type]  # TaskQuery checks the key
        limit=top,
        offset=offset,
        desc=desc,
        min_cost=min_cost,
        min_depth=min_depth,
    )
    named = (("agent", agent), ("status", query.status), ("min_cost", min_cost), ("min_depth", min_depth))
    filters = {k: str(v) for k, v in named if v is not None}
    cursor = task_listing(analysis, query)
    if fmt is not OutputFormat.table:  # machines: streamed from DuckDB, never all rows in Python at once
        if not render_result(cursor, fmt, columns=LIST_COLUMNS):
            say_empty(analysis.why_empty("tasks", window, filters))
        return
    rows = [dict(zip(LIST_COLUMNS, row, strict=True)) for row in cursor.fetchall()]
    layout = TableLayout(
        optional=OPTIONAL, short=("task_id",), short_digits=SHORT_ID, short_note=SHORT_NOTE, times=("start", "end")
    )
    empty = None if rows else analysis.why_empty("tasks", window, filters)
    render(rows, fmt, title="Tasks", totals=TOTALS, columns=LIST_COLUMNS, layout=layout, empty=empty)


def task_command(
    task_id: Annotated[str, typer.Argument(help="The task id (the top trace's trace id), or a unique prefix of it.")],
    data: DataOption = None,
    prices: PricesOption = None,
    gpu_prices: GpuPricesOption = None,
    fmt: Annotated[TreeFormat, typer.Option("--format", help="tree (people) or json (machines).")] = TreeFormat.tree,
    calls: Annotated[
        bool, typer.Option("--calls", help="Also each run's LLM and tool calls: model, tokens, cost, latency, errors.")
    ] = False,
) -> None:
    """A task as a tree of agent runs, with direct and inclusive (sub-agents included) figures.

    Each node is an agent run: its own LLM and tool calls, tokens and cost (direct) and those of every agent
    run below it (inclusive), tokens counted once. JSON: {"task_id", "status", "stitch_state",
    "inclusive_cost_usd", "direct_cost_usd", "root": {agent, trace_id, span_id, depth, direct: {...},
    inclusive: {...}, children: [...]}}; with --calls each node also has "calls": [{trace_id, span_id, name,
    kind (llm, embedding, tool), model, tool_name, start, latency_ms, status, error, charged, the figures}].
    Spans in traces without an agent run count at the run their trace links into (else the root). An
    ambiguous prefix lists the tasks it matches.
    """
    analysis, wanted = open_task(data, task_id, prices, gpu_prices)
    tree = task_tree(analysis, wanted, calls=calls)
    if fmt is TreeFormat.json:
        json.dump(plain_tree(tree), sys.stdout, indent=2)
        sys.stdout.write("\n")
        return
    console = Console(width=console_width() or 1000)  # piped: whole lines, never cut at 80 columns
    console.print(
        f"task {tree['task_id']} ({tree['status']}; stitch state {tree['stitch_state']}): "
        f"{_money(tree['inclusive_cost_usd'])} inclusive, {_money(tree['direct_cost_usd'])} in its own trace"
    )
    console.print(_rich_tree(tree["root"]))


def _money(value: Any) -> str:
    return "-" if value is None else money(value)


def _label(node: dict[str, Any]) -> str:
    d, i = node["direct"], node["inclusive"]
    unknown = [f"{i['unpriced_calls']} unpriced"] if i["unpriced_calls"] else []
    if i["calls_without_usage"]:  # inclusive: the cost shown leaves them out
        unknown.append(f"{i['calls_without_usage']} without usage: cost unknown")
    unpriced = f" ({', '.join(unknown)})" if unknown else ""
    where = f"trace {node['trace_id'][:SHORT_ID]}" + (f" span {node['span_id']}" if node["span_id"] else "")
    depth = node["depth"] if node["depth"] is not None else "-"
    return (
        f"[bold]{escape(node['agent'] or '(no agent run)')}[/bold] depth {depth}"
        f" · {d['llm_calls']} llm · {d['tool_calls']} tools"
        f" · direct {d['input_tokens']:,} in / {d['output_tokens']:,} out {_money(d['total_cost_usd'])}"
        f" · inclusive {i['input_tokens']:,} in / {i['output_tokens']:,} out {_money(i['total_cost_usd'])}"
        f"{unpriced} [dim]{where}[/dim]"
    )


def _call_label(call: dict[str, Any]) -> str:
    what = call["tool_name"] if call["kind"] == "tool" else f"{call['provider'] or '-'}/{call['model'] or '-'}"
    usage = (
        f" · {call['input_tokens']:,} in / {call['output_tokens']:,} out {_money(call['total_cost_usd'])}"
        if call["charged"]
        else ""
    )
    error = f" [red]error: {escape(call['error'] or '')}[/red]" if call["status"] == "error" else ""
    return f"[dim]{call['kind']}[/dim] {escape(str(what))}{usage} · {call['latency_ms']:,.0f} ms{error}"


def _rich_tree(node: dict[str, Any], tree: Tree | None = None) -> Tree:
    branch = Tree(_label(node)) if tree is None else tree.add(_label(node))
    for call in node.get("calls", []):
        branch.add(_call_label(call))
    for child in node["children"]:
        _rich_tree(child, branch)
    return branch


def register(app: typer.Typer) -> None:
    app.command("tasks")(tasks_command)
    app.command("task")(task_command)
