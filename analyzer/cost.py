"""Cost queries: what each agent, task, model, provider, namespace, service, conversation and day cost.

Group keys come from a fixed whitelist (`GROUP_KEYS`) of SQL expressions over the `span_costs` rows
(`analyzer/pricing.py`); user values (times, --where values, --top) are bound parameters, never SQL text.
`--by task` uses the analyzer's task resolution (`analyzer.tasks.install_task_views` -> `trace_tasks`)
and falls back to the receiver's `task_id` hint (or the trace itself) where a trace is not resolved.
A task's cost is its own spans (its top trace) by default, or with `inclusive` every sub-agent's too.
GPU cost per span (view `span_gpu_costs`, `analyzer/gpu.py`) is added where the dataset holds GPU
allocations: self-hosted models are priced by GPU time, so a call with GPU time is not counted unpriced.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb

from analyzer.dataset import AnalyzerError, Dataset, load_sql
from analyzer.pricing import PriceTable, install_span_costs
from analyzer.timeparse import parse_time

TASK_EXPR = "coalesce(tt.task_id, s.task_id, s.trace_id)"
GROUP_KEYS: dict[str, str] = {
    "agent": "s.agent_name",
    "task": f"lower(hex({TASK_EXPR}))",
    "model": "coalesce(s.response_model, s.request_model)",
    "provider": "s.provider",
    "namespace": "s.k8s_namespace",
    "service": "s.service_name",
    "conversation": "s.conversation_id",
    "day": "strftime(timezone('UTC', s.start_time), '%Y-%m-%d')",
}
METRICS = [
    "llm_calls",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "cost_usd",
    "unpriced_calls",
    "gpu_cost_usd",
    "reported_cost_usd",
]


@dataclass
class CostQuery:
    by: list[str]
    since: datetime | None = None
    until: datetime | None = None
    where: dict[str, str] | None = None
    top: int | None = None
    inclusive: bool = False

    @classmethod
    def from_text(
        cls,
        by: list[str],
        since: str | None = None,
        until: str | None = None,
        where: list[str] | None = None,
        top: int | None = None,
        inclusive: bool = False,
    ) -> CostQuery:
        """From the user's words (CLI flags or API query parameters): keys checked, times and filters parsed."""
        check_keys(by)
        return cls(
            by=by,
            since=parse_time(since),
            until=parse_time(until),
            where=parse_where(where or []),
            top=top,
            inclusive=inclusive,
        )


def parse_where(items: list[str]) -> dict[str, str]:
    """['agent=planner', 'day=2026-11-02'] -> {'agent': 'planner', ...}; keys from the whitelist only."""
    where: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise AnalyzerError(f"bad --where {item!r}: use KEY=VALUE, KEY one of {', '.join(GROUP_KEYS)}")
        check_keys([key], option="--where")
        where[key] = value.lower() if key == "task" else value  # task ids are shown as lower-case hex
    return where


def check_keys(keys: list[str], option: str = "--by") -> None:
    for key in keys:
        if key not in GROUP_KEYS:
            raise AnalyzerError(f"unknown {option} key {key!r}: use one of {', '.join(GROUP_KEYS)}")


def install_gpu_costs_if_available(dataset: Dataset) -> None:
    """Per-span GPU cost (self-hosted inference is priced by GPU time) from `analyzer.gpu` when the dataset
    holds GPU allocations; otherwise an empty `span_gpu_costs` view (GPU cost zero)."""
    try:
        from analyzer.gpu import install_gpu_costs
    except ImportError:
        install_gpu_costs = None
    if install_gpu_costs is not None and dataset.has_rows("gpu_allocations"):
        install_gpu_costs(dataset.con)
    else:
        dataset.con.execute(load_sql("cost_no_gpu.sql"))


def _task_join(con: duckdb.DuckDBPyConnection, needed: bool) -> str:
    if not needed:
        return ""
    try:
        from analyzer.tasks import install_task_views
    except ImportError:
        install_task_views = None
    if install_task_views is not None:
        install_task_views(con)
        return "LEFT JOIN trace_tasks AS tt ON tt.trace_id = s.trace_id"
    return "LEFT JOIN (SELECT NULL::BLOB AS trace_id, NULL::BLOB AS task_id) AS tt ON false"


def install_costs(dataset: Dataset, prices_file: Path | None = None) -> PriceTable:
    """span_costs (prices resolved once) and span_gpu_costs on the dataset's connection."""
    # long queries would draw DuckDB's progress bar into the output; in Jupyter without ipywidgets DuckDB
    # refuses the setting (and draws none)
    with contextlib.suppress(duckdb.InvalidInputException):
        dataset.con.execute("SET enable_progress_bar = false")
    prices = install_span_costs(dataset.con, prices_file)
    install_gpu_costs_if_available(dataset)
    return prices


def cost_rows(
    dataset: Dataset, query: CostQuery, prices_file: Path | None = None, *, prices: PriceTable | None = None
) -> tuple[list[dict[str, Any]], PriceTable]:
    """One row per group: the group keys, then METRICS. Ordered by cost (highest first).

    Pass `prices` (from `install_costs`) to run several queries on one connection without re-pricing.
    """
    if not query.by:
        raise AnalyzerError("give at least one --by key")
    check_keys(query.by)
    where = query.where or {}
    check_keys(list(where), option="--where")
    if query.top is not None and query.top < 1:
        raise AnalyzerError("--top must be at least 1")
    con = dataset.con
    if prices is None:
        prices = install_costs(dataset, prices_file)
    uses_task = "task" in query.by or "task" in where or query.inclusive
    filters = [f"CAST({GROUP_KEYS[key]} AS VARCHAR) = $where_{key}" for key in where]
    if "task" in query.by and not query.inclusive:
        filters.append(f"{TASK_EXPR} = s.trace_id")  # direct: only the task's own (top) trace
    sql = load_sql("cost_by.sql").format(
        keys=", ".join(f"{GROUP_KEYS[key]} AS {key}" for key in query.by),
        key_names=", ".join(query.by),
        task_join=_task_join(con, uses_task),
        filters="".join(f" AND {f}" for f in filters),
    )
    params: dict[str, Any] = {"since": query.since, "until": query.until, "top": query.top}
    params.update({f"where_{key}": value for key, value in where.items()})
    result = con.execute(sql, params)
    names = [d[0] for d in result.description]
    return [dict(zip(names, row, strict=True)) for row in result.fetchall()], prices
