"""The Tasks page (`analyze tasks`: one row per task, sortable, filterable, paged) and a task's page
(`analyze task ID --calls`: the tree of agent runs across linked traces, each run's LLM and tool calls, and
one span's every attribute)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from analyzer.analysis import Analysis
from analyzer.console.filters import Cli, Window, resolve_window, url
from analyzer.console.pages import Inputs, Section, Source
from analyzer.dataset import AnalyzerError
from analyzer.output import plain_tree
from analyzer.task_queries import (
    TASK_SORTS,
    TaskQuery,
    count_tasks,
    normalize_ref,
    resolve_task_ref,
    task_span,
    task_stats,
    task_tree,
)
from analyzer.task_queries import list_tasks as query_tasks

PAGE_SIZE = 50


@dataclass(frozen=True)
class TaskListFilters:
    window: Window
    query: TaskQuery
    source: Source

    def params(self) -> dict[str, Any]:
        q = self.query
        return {
            **self.window.query(),
            "agent": q.agent,
            "status": q.status,
            "min_cost": q.min_cost,
            "min_depth": q.min_depth,
            "sort": q.sort,
            "desc": "1" if q.descending else "0",
        }

    def link(self, **changes: Any) -> str:
        """This list's URL with some parameters changed (a sort, a page)."""
        return url("/tasks", {**self.params(), **changes})

    def sort_link(self, key: str) -> str:
        """Sorted by `key`: its natural direction first, the other one when it is sorted so already."""
        if key == self.query.sort:
            return self.link(sort=key, desc="0" if self.query.descending else "1")
        natural = TaskQuery(sort=key).descending  # type: ignore[arg-type]  # a URL's text; TaskQuery checks the key
        return self.link(sort=key, desc="1" if natural else "0")


def _number(inputs: Inputs, name: str, kind: type) -> Any:
    text = inputs.get(name)
    if text is None:
        return None
    try:
        return kind(text)
    except ValueError:
        raise AnalyzerError(f"{name} must be a number, not {text!r}") from None


def parse_list(inputs: Inputs) -> TaskListFilters:
    window = resolve_window(inputs.get("range"), inputs.get("since"), inputs.get("until"), inputs.newest)
    sort = inputs.get("sort") or "start"
    if sort not in TASK_SORTS:
        raise AnalyzerError(f"unknown sort {sort!r}: use one of {', '.join(TASK_SORTS)}")
    desc_text = inputs.get("desc")
    desc = True if desc_text is None and sort == "start" else None if desc_text is None else desc_text == "1"
    page = _number(inputs, "page", int) or 1
    if page < 1:
        raise AnalyzerError("page must be 1 or more")
    status = inputs.get("status")
    query = TaskQuery(
        window=window.range,
        agent=inputs.get("agent"),
        status=status,  # type: ignore[arg-type]  # TaskQuery checks it
        sort=sort,  # type: ignore[arg-type]  # a URL's text; TaskQuery checks the key
        limit=PAGE_SIZE,
        offset=(page - 1) * PAGE_SIZE,
        desc=desc,
        min_cost=_number(inputs, "min_cost", float),
        min_depth=_number(inputs, "min_depth", int),
    )
    return TaskListFilters(window, query, inputs.source)


@dataclass(frozen=True)
class TaskList:
    rows: list[dict[str, Any]]
    total: int
    page: int
    pages: int
    agents: list[str]  # root agents of the window, for the filter
    empty: str | None  # why nothing matched
    cli: list[Cli]


def task_list(analysis: Analysis, f: TaskListFilters) -> TaskList:
    q = f.query
    rows = query_tasks(analysis, q)
    total = count_tasks(analysis, q)
    agents = sorted(r["agent"] for r in task_stats(analysis, "agent", f.window.range) if r["agent"] is not None)
    named = {"agent": q.agent, "status": q.status, "min_cost": q.min_cost, "min_depth": q.min_depth}
    filters = {k: str(v) for k, v in named.items() if v is not None}
    empty = analysis.why_empty("tasks", f.window.range, filters) if not rows else None
    args = ["tasks", "--sort", q.sort, "--desc" if q.descending else "--asc", "--top", str(PAGE_SIZE)]
    if q.offset:
        args += ["--offset", str(q.offset)]
    for name, value in named.items():
        if value is not None:
            args += [f"--{name.replace('_', '-')}", str(value)]
    cli = [f.source.cli(*args, *f.window.cli_args(), "--format", "json")]
    page = q.offset // PAGE_SIZE + 1
    return TaskList(rows, total, page, max(1, -(-total // PAGE_SIZE)), agents, empty, cli)


LIST_SECTIONS = (Section("tasks", "Tasks", "tasks_list.html", task_list),)


# -------------------------------------------------------------------------------- one task


@dataclass(frozen=True)
class TaskFilters:
    ref: str  # the id or prefix in the URL
    span: tuple[str, str] | None  # (trace id, span id) whose attributes are shown
    source: Source


def parse_task(inputs: Inputs) -> TaskFilters:
    ref = normalize_ref(inputs.path["task_ref"])
    span = None
    text = inputs.get("span")
    if text:
        trace, sep, span_id = text.partition(":")
        try:
            bytes.fromhex(trace), bytes.fromhex(span_id)
        except ValueError:
            raise AnalyzerError(f"bad span {text!r}: expected TRACE_ID:SPAN_ID in hex") from None
        if not sep or len(trace) != 32 or len(span_id) != 16:
            raise AnalyzerError(f"bad span {text!r}: expected TRACE_ID:SPAN_ID (32 and 16 hex digits)")
        span = (trace.lower(), span_id.lower())
    return TaskFilters(ref, span, inputs.source)


@dataclass(frozen=True)
class TaskView:
    tree: dict[str, Any]  # analyze task --calls --format json
    traces: int
    span: dict[str, Any] | None  # every column of the chosen span
    cli: list[Cli]


def task_view(analysis: Analysis, f: TaskFilters) -> TaskView:
    task_id = resolve_task_ref(analysis, f.ref)
    tree = plain_tree(task_tree(analysis, task_id, calls=True))
    traces = len(_traces(tree["root"]))
    span = None
    if f.span:
        found = task_span(analysis, task_id, bytes.fromhex(f.span[0]), bytes.fromhex(f.span[1]))
        span = plain_tree(found)
    cli = [f.source.cli("task", task_id.hex(), "--calls", "--format", "json")]
    return TaskView(tree, traces, span, cli)


def _traces(node: dict[str, Any]) -> set[str]:
    found = {node["trace_id"]}
    for child in node["children"]:
        found |= _traces(child)
    return found


TASK_SECTIONS = (Section("task", "Task", "task_tree.html", task_view),)
