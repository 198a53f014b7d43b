"""Task queries: the task listing, one task as a tree of agent runs, and task-cost statistics per agent.

Tasks are resolved over the whole dataset by `analyzer.tasks` (authoritative). Every figure is the one of
`analyzer.figures`, over the task's `charges` rows: a task's cost is **inclusive** of every sub-agent
(`inclusive_cost_usd`, the same figure as `analyze cost --by task`), and `direct_cost_usd` is its own
(top) trace only. A task **failed** when its top trace's root span ended with status ERROR.

Task ids are the top trace's trace id (32 hex digits); anywhere a task id is taken, a unique prefix of it
will do (`resolve_task_ref`), as `analyze tasks` shows them shortened to `SHORT_ID` digits.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

import duckdb

from analyzer.analysis import Analysis
from analyzer.dataset import AnalyzerError, load_sql
from analyzer.figures import FIGURE_NAMES, FIGURE_SELECT
from analyzer.timeparse import TimeRange

MAX_ROWS = 1_000_000_000  # --top / --offset: past any dataset's tasks (and within DuckDB's LIMIT)
SHORT_ID = 16  # hex digits shown for a task id in tables; `analyze task` takes any unique prefix
MAX_TREE_DEPTH = 200
MAX_CANDIDATES = 10  # an ambiguous prefix lists at most this many tasks
HEX = re.compile(r"^[0-9a-f]{1,32}$")
TaskStatus = Literal["failed", "ok"]
TaskSort = Literal["start", "cost", "calls", "agent", "depth", "status"]
# ORDER BY of each sort key in its natural direction (`TaskQuery.desc` None): cost, calls and depth most
# first; start, agent and status (failed before ok) ascending. Ties: by start, then id, so pages are stable.
_SORT_ORDER: dict[str, tuple[str, bool]] = {
    "start": ("_start_time {dir}, _task_id {dir}", False),
    "cost": ("inclusive_cost_usd {dir} NULLS LAST, input_tokens + output_tokens {dir}", True),
    "calls": ("llm_calls {dir}", True),
    "agent": ("root_agent {dir} NULLS LAST", False),
    "depth": ("max_depth {dir}", True),
    "status": ("status {dir}", False),
}
TASK_SORTS: tuple[str, ...] = tuple(_SORT_ORDER)
_FIGURE_COLUMNS = tuple("inclusive_cost_usd" if n == "total_cost_usd" else n for n in FIGURE_NAMES)
LIST_COLUMNS: tuple[str, ...] = (
    "task_id",
    "root_agent",
    "status",
    "start",
    "end",
    "traces",
    "agent_runs",
    "agents",
    "max_depth",
    "tool_calls",
    *_FIGURE_COLUMNS,
    "direct_cost_usd",
    "stitch_state",
)
STATS_KEYS = ("agent", "day", "week", "month")
STATS_COLUMNS = (
    "tasks",
    "failed_tasks",
    "mean_task_cost_usd",
    "p50_task_cost_usd",
    "p95_task_cost_usd",
    "max_task_cost_usd",
    "failed_cost_usd",
    "inclusive_cost_usd",
    "unpriced_calls",
    "calls_without_usage",
)


@dataclass(frozen=True)
class TaskQuery:
    """Which tasks, in which order, which page. `sort` in its natural direction unless `desc` says
    (`sort='cost'`: most expensive first, as `--top`; `sort='start'`: oldest first)."""

    window: TimeRange = field(default_factory=TimeRange)
    agent: str | None = None
    status: TaskStatus | None = None
    sort: TaskSort = "start"
    limit: int | None = None
    offset: int = 0
    desc: bool | None = None  # None: the sort key's natural direction
    min_cost: float | None = None  # only tasks whose inclusive cost is known and at least this (USD)
    min_depth: int | None = None  # only tasks whose agent runs nest at least this deep

    def __post_init__(self) -> None:
        if self.limit is not None and not 1 <= self.limit <= MAX_ROWS:
            raise AnalyzerError(f"--top must be between 1 and {MAX_ROWS:,}")
        if not 0 <= self.offset <= MAX_ROWS:
            raise AnalyzerError(f"--offset must be between 0 and {MAX_ROWS:,}")
        if self.status not in (None, "failed", "ok"):
            raise AnalyzerError(f"unknown status {self.status!r}: use failed or ok")
        if self.sort not in _SORT_ORDER:
            raise AnalyzerError(f"unknown sort {self.sort!r}: use one of {', '.join(TASK_SORTS)}")
        if self.min_cost is not None and not (0 <= self.min_cost < 1e15):
            raise AnalyzerError("--min-cost must be a number of USD >= 0")
        if self.min_depth is not None and not 0 <= self.min_depth <= MAX_TREE_DEPTH:
            raise AnalyzerError(f"--min-depth must be between 0 and {MAX_TREE_DEPTH}")

    @property
    def descending(self) -> bool:
        return _SORT_ORDER[self.sort][1] if self.desc is None else self.desc

    def order_sql(self) -> str:
        """ORDER BY of the listing: the sort key, then start and id (stable pages); from fixed text only."""
        direction = "DESC" if self.descending else "ASC"
        key = _SORT_ORDER[self.sort][0].format(dir=direction)
        return key if self.sort == "start" else f"{key}, _start_time, _task_id"

    def params(self) -> dict[str, Any]:
        return {
            "since": self.window.since,
            "until": self.window.until,
            "agent": self.agent,
            "status": self.status,
            "min_cost": self.min_cost,
            "min_depth": self.min_depth,
            "limit": self.limit,
            "offset": self.offset,
        }


def install_task_rows(analysis: Analysis) -> None:
    """The task_rows view (every task, every listing column) over the resolved tasks: the listing, the
    counts and the per-agent statistics read it."""
    analysis.install_tasks()
    if analysis.has_relation("task_rows"):
        return
    figure_names = ",\n       ".join(
        f"s.{name} AS inclusive_cost_usd" if name == "total_cost_usd" else f"s.{name}" for name in FIGURE_NAMES
    )
    analysis.con.execute(load_sql("tasks_rows.sql").format(figures=FIGURE_SELECT, figure_names=figure_names))


def _listing_sql(columns: str, query: TaskQuery) -> str:
    sql = load_sql("tasks_list.sql").format(columns=columns, order=query.order_sql())
    return sql.rstrip().removesuffix(";")  # also a subquery (count_tasks, task_stats)


def task_listing(analysis: Analysis, query: TaskQuery) -> duckdb.DuckDBPyConnection:
    """The executed listing query (rows not fetched yet: machine formats stream them), LIST_COLUMNS."""
    install_task_rows(analysis)
    columns = ", ".join(f'"{c}"' for c in LIST_COLUMNS)
    return analysis.con.execute(_listing_sql(columns, query), query.params())


def list_tasks(analysis: Analysis, query: TaskQuery) -> list[dict[str, Any]]:
    cursor = task_listing(analysis, query)
    return [dict(zip(LIST_COLUMNS, row, strict=True)) for row in cursor.fetchall()]


def count_tasks(analysis: Analysis, query: TaskQuery) -> int:
    """How many tasks the query's filters match (no page)."""
    install_task_rows(analysis)
    unpaged = {**query.params(), "limit": None, "offset": 0}
    row = analysis.con.execute(f"SELECT count(*) FROM ({_listing_sql('1', query)})", unpaged).fetchone()  # noqa: S608
    return int(row[0]) if row else 0


# ------------------------------------------------------------------------------------------- task ids


def normalize_ref(text: str) -> str:
    """A task id or a prefix of one, as lower-case hex; anything else is a one-line error."""
    ref = text.strip().lower()
    if not HEX.match(ref):
        raise AnalyzerError(f"malformed task id {text!r}: expected up to 32 hex digits (a task id or its prefix)")
    return ref


def prefix_bounds(ref: str) -> tuple[bytes, bytes | None]:
    """[low, high) of the 16-byte ids starting with the hex prefix `ref` (high None: to the end)."""
    bits = 4 * len(ref)
    value = int(ref, 16) << (128 - bits)
    high = value + (1 << (128 - bits))
    return value.to_bytes(16, "big"), high.to_bytes(16, "big") if high < 1 << 128 else None


def resolve_task_ref(analysis: Analysis, text: str, candidates: list[bytes] | None = None) -> bytes:
    """The task id a full id or a unique prefix names (on a resolved Analysis). An unknown one, a sub-agent's
    trace, or an ambiguous prefix (listing the candidates) is a one-line AnalyzerError."""
    ref = normalize_ref(text)
    analysis.install_tasks()
    low, high = prefix_bounds(ref)
    tasks = [
        row[0]
        for row in analysis.con.execute(
            "SELECT DISTINCT task_id FROM trace_tasks WHERE task_id >= $low AND ($high IS NULL OR task_id < $high) "
            "AND task_id = trace_id ORDER BY task_id LIMIT $n",
            {"low": low, "high": high, "n": MAX_CANDIDATES + 1},
        ).fetchall()
    ]
    if len(tasks) == 1:
        return tasks[0]
    if len(tasks) > 1:
        listed = ", ".join(t.hex() for t in tasks[:MAX_CANDIDATES])
        more = " and more" if len(tasks) > MAX_CANDIDATES else ""
        raise AnalyzerError(f"ambiguous task id {ref!r}: it starts {listed}{more}; give more digits")
    sub = analysis.con.execute(
        "SELECT trace_id, task_id FROM trace_tasks WHERE trace_id >= $low AND ($high IS NULL OR trace_id < $high) "
        "ORDER BY trace_id LIMIT 1",
        {"low": low, "high": high},
    ).fetchone()
    if sub is not None:
        # a scoped Analysis (analyzer/task_scope.py) holds the trace's parent but not the whole way up: it can
        # tell that the trace is not a task, not which task it belongs to
        raise AnalyzerError(
            f"{ref} is not a task id: trace {sub[0].hex()} is a sub-agent trace of task {sub[1].hex()}"
            if sub[1] != sub[0] and not analysis.scoped
            else f"{ref} is not a task id: trace {sub[0].hex()} is a sub-agent trace of another task "
            "(`analyze tasks` lists the tasks)"
        )
    raise AnalyzerError(f"unknown task id {ref}: no trace of the dataset starts with it")


# ------------------------------------------------------------------------------------------- one task


def task_tree(analysis: Analysis, task_id: bytes, *, calls: bool = False) -> dict[str, Any]:
    """The task as nested agent runs with direct and inclusive figures (see `analyze task --help`); money as
    exact Decimals (`analyzer.output.plain_tree` makes it JSON's). `calls`: each run also lists its LLM and
    tool calls (`task_calls`), in start order."""
    analysis.install_task_nodes()
    con = analysis.con
    state = con.execute(
        "SELECT string_agg(DISTINCT stitch_state, ',' ORDER BY stitch_state) FILTER (WHERE stitch_state <> 'ok'), "
        "count(*) FROM trace_tasks WHERE task_id = $task_id",
        {"task_id": task_id},
    ).fetchone()
    if not state or not state[1]:
        raise AnalyzerError(f"unknown task id {task_id.hex()}: no trace of the dataset belongs to it")
    failed = con.execute(
        "SELECT coalesce(bool_or(failed_root), false) FROM task_span_nodes WHERE task_id = $task_id",
        {"task_id": task_id},
    ).fetchone()
    runs = con.execute(load_sql("tasks_tree_runs.sql"), {"task_id": task_id}).fetchall()
    deepest = max((run[3] for run in runs), default=0)
    if deepest > MAX_TREE_DEPTH:  # nested output (Rich, JSON) recurses per level: refuse, never crash
        raise AnalyzerError(
            f"task {task_id.hex()} nests agent runs {deepest} deep (over {MAX_TREE_DEPTH}): "
            "too deep to print as a tree; see `analyze tasks` and the agent_runs view"
        )
    cursor = con.execute(load_sql("tasks_tree_direct.sql").format(figures=FIGURE_SELECT), {"task_id": task_id})
    names = [d[0] for d in cursor.description]
    direct = {(row[0], row[1]): dict(zip(names[2:], row[2:], strict=True)) for row in cursor.fetchall()}

    nodes: dict[tuple[bytes, bytes], dict[str, Any]] = {}
    for trace_id, span_id, agent_name, depth, _pt, _ps, _start in runs:
        nodes[(trace_id, span_id)] = _node(agent_name, trace_id.hex(), span_id.hex(), depth)
        nodes[(trace_id, span_id)]["_direct"] = direct.get((trace_id, span_id))
    # The root: the first top-level agent run of the task's top trace; without one, the top trace itself.
    root_key = next(((t, s) for t, s, _n, _d, pt, _ps, _st in runs if t == task_id and pt is None), None)
    root = nodes[root_key] if root_key is not None else _node(None, task_id.hex(), None, None)
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
    if calls:
        for node in nodes.values():
            node["calls"] = []
        root["calls"] = root.get("calls", [])
        for key, call in task_calls(analysis, task_id):
            (nodes.get(key) or root)["calls"].append(call)  # calls of no agent run count at the root
    _totals(root)
    inclusive_cost, direct_cost = con.execute(
        "SELECT sum(total_cost_usd), sum(total_cost_usd) FILTER (WHERE trace_id = task_id) "
        "FROM task_span_nodes WHERE task_id = $task_id",
        {"task_id": task_id},
    ).fetchone() or (None, None)
    return {
        "task_id": task_id.hex(),
        "status": "failed" if failed and failed[0] else "ok",
        "stitch_state": state[0] or "ok",
        "inclusive_cost_usd": inclusive_cost,  # the root's inclusive total_cost_usd
        "direct_cost_usd": direct_cost,  # the task's own (top) trace, as `analyze tasks` shows it
        "root": root,
    }


def _node(agent: str | None, trace_id: str, span_id: str | None, depth: int | None) -> dict[str, Any]:
    return {"agent": agent, "trace_id": trace_id, "span_id": span_id, "depth": depth, "_direct": None, "children": []}


_TOTAL_FIELDS = ("tool_calls", *FIGURE_NAMES)
_NULLABLE = ("token_cost_usd", "total_cost_usd", "reported_cost_usd")  # unknown stays unknown, never 0


def _zero() -> dict[str, Any]:
    return {name: None if name in _NULLABLE else 0 for name in _TOTAL_FIELDS}


def _add(into: dict[str, Any], part: dict[str, Any] | None) -> None:
    if not part:
        return
    for name in _TOTAL_FIELDS:
        value = part.get(name)
        if value is not None:
            into[name] = (into[name] or 0) + value


def _totals(node: dict[str, Any]) -> dict[str, Any]:
    own = _zero()
    _add(own, node.pop("_direct", None))
    _add(own, node.pop("_extra", None))
    inclusive = dict(own)
    for child in node["children"]:
        _add(inclusive, _totals(child))
    node["direct"] = {name: own[name] for name in _TOTAL_FIELDS}
    node["inclusive"] = {name: inclusive[name] for name in _TOTAL_FIELDS}
    if "calls" in node:
        node["calls"] = node.pop("calls")
    node["children"] = node.pop("children")  # children last, for people reading the JSON
    return inclusive


CALL_COLUMNS = (
    "trace_id",
    "span_id",
    "name",
    "kind",
    "provider",
    "model",
    "tool_name",
    "start",
    "latency_ms",
    "status",
    "error",
    "charged",
    *FIGURE_NAMES,
)


def task_calls(analysis: Analysis, task_id: bytes) -> list[tuple[tuple[bytes, bytes], dict[str, Any]]]:
    """Every LLM (or embedding) call and tool call of the task, in start order, each with the key of the agent
    run it belongs to (trace id, span id; the root's key for spans of no run) and its figures (CALL_COLUMNS:
    `charged` false for a tool call, or an inference span whose usage counts on another span)."""
    analysis.install_task_nodes()
    traces = [
        row[0]
        for row in analysis.con.execute(
            "SELECT trace_id FROM trace_tasks WHERE task_id = $task_id", {"task_id": task_id}
        ).fetchall()
    ]
    cursor = analysis.con.execute(
        load_sql("tasks_tree_calls.sql").format(figures=FIGURE_SELECT), {"task_id": task_id, "traces": traces}
    )
    found = []
    for row in cursor.fetchall():
        call = dict(zip(CALL_COLUMNS, row[2:], strict=True))
        call["trace_id"], call["span_id"] = call["trace_id"].hex(), call["span_id"].hex()
        found.append(((row[0], row[1]), call))
    return found


def task_span(analysis: Analysis, task_id: bytes, trace_id: bytes, span_id: bytes) -> dict[str, Any]:
    """One span of the task, every column of the dataset (attributes, resource attributes, links, times);
    a span of another task, or none, is a one-line AnalyzerError."""
    analysis.install_tasks()
    belongs = analysis.con.execute(
        "SELECT count(*) FROM trace_tasks WHERE trace_id = $trace_id AND task_id = $task_id",
        {"trace_id": trace_id, "task_id": task_id},
    ).fetchone()
    if not belongs or not belongs[0]:
        raise AnalyzerError(f"trace {trace_id.hex()} is not a trace of task {task_id.hex()}")
    cursor = analysis.con.execute(
        "SELECT * FROM spans WHERE trace_id IN (SELECT unnest([$trace_id::BLOB])) AND span_id = $span_id LIMIT 1",
        {"trace_id": trace_id, "span_id": span_id},
    )
    row = cursor.fetchone()
    if row is None:
        raise AnalyzerError(f"no span {span_id.hex()} in trace {trace_id.hex()}")
    return dict(zip([d[0] for d in cursor.description], row, strict=True))


# ------------------------------------------------------------------------------------------- per agent


def task_stats(analysis: Analysis, by: str = "agent", window: TimeRange | None = None) -> list[dict[str, Any]]:
    """Per root agent (the agent that took the task) or per day / week / month of the task's start: how many
    tasks, how many failed, the distribution of a task's inclusive cost (mean, p50, p95, max: over the tasks
    whose cost is known), what the failed ones cost, and the total."""
    if by not in STATS_KEYS:
        raise AnalyzerError(f"unknown --by key {by!r} for tasks: use one of {', '.join(STATS_KEYS)}")
    window = window or TimeRange()
    install_task_rows(analysis)
    query = TaskQuery(window=window)
    key = {
        "agent": "root_agent",
        "day": "left(start, 10)",
        "week": "strftime(start::TIMESTAMP, '%G-W%V')",
        "month": "left(start, 7)",
    }[by]
    order = "1" if by != "agent" else "inclusive_cost_usd DESC NULLS LAST, 1"
    stats = analysis.con.execute(
        f"""
        SELECT {key} AS grp,
               count(*) AS tasks,
               count(*) FILTER (WHERE status = 'failed') AS failed_tasks,
               avg(inclusive_cost_usd) AS mean_task_cost_usd,
               quantile_cont(inclusive_cost_usd, 0.5) AS p50_task_cost_usd,
               quantile_cont(inclusive_cost_usd, 0.95) AS p95_task_cost_usd,
               max(inclusive_cost_usd) AS max_task_cost_usd,
               CASE WHEN count(*) FILTER (WHERE status = 'failed') = 0 THEN 0
                    ELSE sum(inclusive_cost_usd) FILTER (WHERE status = 'failed') END AS failed_cost_usd,
               sum(inclusive_cost_usd) AS inclusive_cost_usd,
               sum(unpriced_calls) AS unpriced_calls,
               sum(calls_without_usage) AS calls_without_usage
        FROM ({_listing_sql("*", query)})
        GROUP BY ALL
        ORDER BY {order}
        """,  # noqa: S608 (fixed expressions)
        query.params(),
    )
    return [{by: row[0], **dict(zip(STATS_COLUMNS, row[1:], strict=True))} for row in stats.fetchall()]
