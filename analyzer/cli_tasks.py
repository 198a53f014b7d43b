"""`analyze tasks` and `analyze task`: tasks (an orchestrator and every sub-agent it spawned) and their trees.

Tasks are resolved over the whole dataset by analyzer.tasks (authoritative); tokens count once
(counted_spans); cost comes from analyzer.pricing's span_costs (unpriced calls are counted, never zero).
"""

from __future__ import annotations

import json
import re
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import duckdb
import typer
from rich.console import Console
from rich.tree import Tree

from analyzer.dataset import AnalyzerError, load_sql, open_dataset
from analyzer.output import OutputFormat, render, render_result
from analyzer.pricing import install_span_costs
from analyzer.tasks import install_task_views
from analyzer.timeparse import parse_time

TASK_ID_RE = re.compile(r"^[0-9a-fA-F]{32}$")
MAX_TREE_DEPTH = 200
TOKEN_FIELDS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens")
TOTAL_FIELDS = ("llm_calls", "tool_calls", *TOKEN_FIELDS, "cost_usd", "unpriced_calls")

DataOption = Annotated[
    Path | None,
    typer.Option("--data", help="Dataset directory (default: $AGENTMETER_DATA, else ./agentmeter-data)."),
]
PricesOption = Annotated[
    Path | None, typer.Option("--prices", help="User price file overriding or adding model prices.")
]


class TreeFormat(StrEnum):
    tree = "tree"
    json = "json"


def prepare(con: duckdb.DuckDBPyConnection, prices: Path | None) -> None:
    """Task resolution, costs and the per-span tree nodes on one connection."""
    install_task_views(con)
    install_span_costs(con, prices)
    con.execute(load_sql("tasks_span_nodes.sql"))


def task_listing(
    con: duckdb.DuckDBPyConnection,
    since: Any = None,
    until: Any = None,
    agent: str | None = None,
    top: int | None = None,
) -> duckdb.DuckDBPyConnection:
    """The executed task listing query (rows not fetched yet): see `list_tasks`."""
    params = {"since": since, "until": until, "agent": agent, "top": top}
    return con.execute(load_sql("tasks_list.sql"), params)


def list_tasks(
    con: duckdb.DuckDBPyConnection,
    since: Any = None,
    until: Any = None,
    agent: str | None = None,
    top: int | None = None,
) -> list[dict[str, Any]]:
    """Tasks by start time; with `top`, the `top` most expensive (then most tokens) first."""
    cursor = task_listing(con, since, until, agent, top)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def parse_task_id(text: str) -> bytes:
    if not TASK_ID_RE.match(text.strip()):
        raise AnalyzerError(f"malformed task id {text!r}: expected 32 hex digits (a trace id)")
    return bytes.fromhex(text.strip())


def task_tree(con: duckdb.DuckDBPyConnection, task_id: bytes) -> dict[str, Any]:
    """The task as nested agent runs with direct and inclusive totals (see `analyze task --help`)."""
    state = con.execute(
        "SELECT string_agg(DISTINCT stitch_state, ',' ORDER BY stitch_state) FILTER (WHERE stitch_state <> 'ok'), "
        "count(*) FROM trace_tasks WHERE task_id = $task_id",
        {"task_id": task_id},
    ).fetchone()
    if not state[1]:
        raise AnalyzerError(f"unknown task id {task_id.hex()}: no trace of the dataset belongs to it")
    runs = con.execute(load_sql("tasks_tree_runs.sql"), {"task_id": task_id}).fetchall()
    deepest = max((depth for _t, _s, _n, depth, *_rest in runs), default=0)
    if deepest > MAX_TREE_DEPTH:  # nested output (Rich, JSON) recurses per level: refuse, never crash
        raise AnalyzerError(
            f"task {task_id.hex()} nests agent runs {deepest} deep (over {MAX_TREE_DEPTH}): "
            "too deep to print as a tree; see `analyze tasks` and the agent_runs view"
        )
    cursor = con.execute(load_sql("tasks_tree_direct.sql"), {"task_id": task_id})
    names = [d[0] for d in cursor.description]
    direct = {(row[0], row[1]): dict(zip(names[2:], row[2:], strict=True)) for row in cursor.fetchall()}

    nodes: dict[tuple[bytes, bytes], dict[str, Any]] = {}
    for trace_id, span_id, agent_name, depth, _pt, _ps, _start in runs:
        nodes[(trace_id, span_id)] = {
            "agent": agent_name,
            "trace_id": trace_id.hex(),
            "span_id": span_id.hex(),
            "depth": depth,
            "_direct": direct.get((trace_id, span_id)),
            "children": [],
        }
    # The root: the first top-level agent run of the task's top trace; without one, the top trace itself.
    root_key = next(((t, s) for t, s, _n, d, pt, _ps, _st in runs if t == task_id and pt is None), None)
    if root_key is not None:
        root = nodes[root_key]
    else:
        root = {"agent": None, "trace_id": task_id.hex(), "span_id": None, "depth": None, "children": []}
        root["_direct"] = None
    for trace_id, span_id, _n, _d, parent_trace, parent_span, _st in runs:
        key = (trace_id, span_id)
        if key == root_key:
            continue
        parent = nodes.get((parent_trace, parent_span)) if parent_trace is not None else None
        (parent or root)["children"].append(nodes[key])  # runs without a parent agent hang under the root
    # Usage of spans with no agent run to belong to (traces without one) counts at the root.
    extra = _zero()
    for key, part in direct.items():
        if key not in nodes:
            _add(extra, part)
    root["_extra"] = extra
    _totals(root)
    return {"task_id": task_id.hex(), "stitch_state": state[0] or "ok", "root": root}


def _zero() -> dict[str, Any]:
    return {field: 0 for field in TOTAL_FIELDS} | {"cost_usd": None}


def _add(into: dict[str, Any], part: dict[str, Any] | None) -> None:
    if not part:
        return
    for field in TOTAL_FIELDS:
        value = part.get(field)
        if value is None:
            continue
        into[field] = (into[field] or 0) + value


def _totals(node: dict[str, Any]) -> dict[str, Any]:
    own = _zero()
    _add(own, node.pop("_direct", None))
    _add(own, node.pop("_extra", None))
    inclusive = dict(own)
    for child in node["children"]:
        _add(inclusive, _totals(child))
    node["llm_calls"] = own["llm_calls"]
    node["tool_calls"] = own["tool_calls"]
    node["direct"] = {k: own[k] for k in (*TOKEN_FIELDS, "cost_usd", "unpriced_calls")}
    node["inclusive"] = {k: inclusive[k] for k in TOTAL_FIELDS}
    node["children"] = node.pop("children")  # children last, for people reading the JSON
    return inclusive


def _label(node: dict[str, Any]) -> str:
    d, i = node["direct"], node["inclusive"]
    cost = f" · ${i['cost_usd']:,.4f}" if i["cost_usd"] is not None else ""
    unpriced = f" ({i['unpriced_calls']} unpriced)" if i["unpriced_calls"] else ""
    where = f"trace {node['trace_id'][:8]}…" + (f" span {node['span_id']}" if node["span_id"] else "")
    return (
        f"[bold]{node['agent'] or '(no agent run)'}[/bold] depth {node['depth'] if node['depth'] is not None else '-'}"
        f" · {node['llm_calls']} llm · {node['tool_calls']} tools"
        f" · direct {d['input_tokens']:,} in / {d['output_tokens']:,} out"
        f" · inclusive {i['input_tokens']:,} in / {i['output_tokens']:,} out{cost}{unpriced} [dim]{where}[/dim]"
    )


def _rich_tree(node: dict[str, Any], tree: Tree | None = None) -> Tree:
    branch = Tree(_label(node)) if tree is None else tree.add(_label(node))
    for child in node["children"]:
        _rich_tree(child, branch)
    return branch


def register(app: typer.Typer) -> None:
    @app.command("tasks")
    def tasks_command(
        data: DataOption = None,
        since: Annotated[str | None, typer.Option(help="Tasks starting at/after: ISO date/time or 7d, 24h.")] = None,
        until: Annotated[str | None, typer.Option(help="Tasks starting before: ISO date/time or 7d, 24h.")] = None,
        agent: Annotated[str | None, typer.Option(help="Only tasks with an agent run of this name.")] = None,
        top: Annotated[
            int | None, typer.Option(min=1, help="Only the N most expensive tasks (then most tokens), first.")
        ] = None,
        prices: PricesOption = None,
        fmt: Annotated[OutputFormat, typer.Option("--format", help="table, json or csv.")] = OutputFormat.table,
    ) -> None:
        """One row per task: the top trace and every sub-agent trace linked under it, tokens counted once."""
        since_t, until_t = parse_time(since), parse_time(until)
        dataset = open_dataset(data)
        prepare(dataset.con, prices)
        if fmt is not OutputFormat.table:  # machines: streamed from DuckDB, never all rows in Python at once
            render_result(task_listing(dataset.con, since_t, until_t, agent, top), fmt, columns=LIST_COLUMNS)
            return
        rows = list_tasks(dataset.con, since_t, until_t, agent, top)
        totals = ["traces", "agent_runs", "llm_calls", "tool_calls", "input_tokens", "output_tokens"]
        if rows and all(r["cost_usd"] is not None for r in rows):  # a total over unpriced calls would mislead
            totals.append("cost_usd")
        render(rows, fmt, title="Tasks", totals=totals, columns=LIST_COLUMNS)

    @app.command("task")
    def task_command(
        task_id: Annotated[str, typer.Argument(help="The task id: the top trace's trace id, 32 hex digits.")],
        data: DataOption = None,
        prices: PricesOption = None,
        fmt: Annotated[
            TreeFormat, typer.Option("--format", help="tree (people) or json (machines).")
        ] = TreeFormat.tree,
    ) -> None:
        """A task as a tree of agent runs, with direct and inclusive (sub-agents included) tokens and cost.

        Each node is an agent run: its own LLM and tool calls and tokens (direct) and those of every agent
        run below it (inclusive), tokens counted once. JSON: {"task_id", "stitch_state", "root": {agent,
        trace_id, span_id, depth, llm_calls, tool_calls, direct: {...}, inclusive: {...}, children: [...]}}.
        Spans in traces without an agent run count at the run their trace links into (else the root).
        """
        wanted = parse_task_id(task_id)
        dataset = open_dataset(data)
        prepare(dataset.con, prices)
        tree = task_tree(dataset.con, wanted)
        if fmt is TreeFormat.json:
            json.dump(tree, sys.stdout, indent=2)
            sys.stdout.write("\n")
            return
        Console().print(f"task {tree['task_id']} (stitch state: {tree['stitch_state']})")
        Console().print(_rich_tree(tree["root"]))


LIST_COLUMNS = (
    "task_id",
    "root_agent",
    "traces",
    "agent_runs",
    "agents",
    "max_depth",
    "start",
    "end",
    "llm_calls",
    "tool_calls",
    "input_tokens",
    "output_tokens",
    "cost_usd",
    "unpriced_calls",
    "stitch_state",
)
