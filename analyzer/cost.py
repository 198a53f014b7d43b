"""Cost queries: the figures (`analyzer.figures`) per agent, task, model, provider, namespace, service,
conversation, hour / day / week / month, or any resource or span attribute (`label:KEY`).

The figures and the charging rule (a call is charged once: by its tokens when its model has a token price,
else by its share of GPU busy time, else it is unpriced) are defined in `analyzer/figures.py`, over the
`charges` rows (`analyzer/sql/charges.sql`). This module only groups and filters them.

Group keys come from a fixed whitelist (`GROUP_KEYS`) of SQL expressions; user values (times, `--where`
values, label keys, `--top`) are bound parameters, never SQL text.

- `provider`, `model`: who serves and bills the call and the model as that provider names it, resolved as
  genai-prices resolves them (`analyzer.pricing.resolved_names`: strands-agents' `gpt-4.1` is openai's,
  LiteLLM's `openai/gpt-4.1` is openai's `gpt-4.1`); `span_provider`, `span_model`: as the span named them.
- `task`: the analyzer's task resolution (`trace_tasks`). A task's figures are **inclusive** of every
  sub-agent's calls by default (the task as `analyze tasks` and `analyze task` show it); `direct` keeps
  only the task's own (top) trace. The total column then says which: `inclusive_cost_usd` or
  `direct_cost_usd` (the same figure as `total_cost_usd`, named for its scope).
- `hour` (`2026-11-02T14:00Z`), `day`, `week` (ISO, `2026-W45`), `month`: the call's start in UTC; rows
  come in time order.
- `label:KEY`: the span's attribute KEY, else the resource's; for a Kubernetes label the names the
  Collector gives it are tried too (`LABEL_TAGS`: `k8s.pod.labels.KEY` from k8sattributes, `agent.KEY` as
  otel-config/collector.yaml tags the pod label `team`). Calls without it group under `-` (null).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from analyzer.analysis import Analysis
from analyzer.dataset import AnalyzerError, load_sql
from analyzer.figures import FIGURE_NAMES, FIGURE_SELECT, MONEY_FIGURES
from analyzer.pricing import PriceTable
from analyzer.timeparse import TimeRange

LABEL_PREFIX = "label:"
# where a Kubernetes label KEY may sit, after the attribute KEY itself (see the module docstring)
LABEL_TAGS = ("k8s.pod.labels.{key}", "k8s.namespace.labels.{key}", "agent.{key}")
TASK_EXPR = "coalesce(tt.task_id, c.task_hint, c.trace_id)"
TIME_KEYS: dict[str, str] = {
    "hour": "strftime(timezone('UTC', c.start_time), '%Y-%m-%dT%H:00Z')",
    "day": "strftime(timezone('UTC', c.start_time), '%Y-%m-%d')",
    "week": "strftime(timezone('UTC', c.start_time), '%G-W%V')",
    "month": "strftime(timezone('UTC', c.start_time), '%Y-%m')",
}
GROUP_KEYS: dict[str, str] = {
    "agent": "c.agent_name",
    "task": f"lower(hex({TASK_EXPR}))",
    "model": "c.model",
    "provider": "c.provider",
    "span_provider": "c.span_provider",
    "span_model": "c.span_model",
    "namespace": "c.k8s_namespace",
    "service": "c.service_name",
    "conversation": "c.conversation_id",
    **TIME_KEYS,
}
KEYS_HELP = ", ".join(GROUP_KEYS) + ", label:KEY"
METRICS = list(FIGURE_NAMES)
MAX_TOP = 1_000_000_000  # past any dataset's groups (and within DuckDB's LIMIT)
MONEY_COLUMNS = (*MONEY_FIGURES, "inclusive_cost_usd", "direct_cost_usd")


@dataclass
class CostQuery:
    by: list[str]
    window: TimeRange = field(default_factory=TimeRange)
    where: dict[str, str] = field(default_factory=dict)
    top: int | None = None
    direct: bool = False  # with task: only the task's own (top) trace

    def __post_init__(self) -> None:
        check_keys(self.by)
        check_keys(list(self.where), option="--where")
        if self.top is not None and not 1 <= self.top <= MAX_TOP:
            raise AnalyzerError(f"--top must be between 1 and {MAX_TOP:,}")

    @classmethod
    def from_text(
        cls,
        by: list[str],
        since: str | None = None,
        until: str | None = None,
        where: list[str] | None = None,
        top: int | None = None,
        direct: bool = False,
    ) -> CostQuery:
        """From the user's words (CLI flags or API query parameters): keys checked, times and filters parsed."""
        check_keys(by)
        return cls(by=by, window=TimeRange.parse(since, until), where=parse_where(where or []), top=top, direct=direct)

    @property
    def uses_task(self) -> bool:
        return "task" in self.by or "task" in self.where or self.direct

    @property
    def total_name(self) -> str:
        """The total column's name: for tasks it says whether sub-agents are included."""
        if "task" not in self.by:
            return "total_cost_usd"
        return "direct_cost_usd" if self.direct else "inclusive_cost_usd"

    @property
    def columns(self) -> list[str]:
        return [*self.by, *(self.total_name if m == "total_cost_usd" else m for m in METRICS)]

    def title(self) -> str:
        if not self.by:
            return "Cost" + (f" {self.window.describe()}" if not self.window.is_open else "")
        scope = ""
        if "task" in self.by:
            scope = " (the task's own trace only)" if self.direct else " (inclusive of every sub-agent)"
        return "Cost by " + " x ".join(self.by) + scope


@dataclass
class CostResult:
    query: CostQuery
    rows: list[dict[str, Any]]
    prices: PriceTable

    @property
    def columns(self) -> list[str]:
        return self.query.columns


def parse_where(items: list[str]) -> dict[str, str]:
    """['agent=planner', 'label:team=search'] -> {'agent': 'planner', ...}; keys from the whitelist only."""
    where: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise AnalyzerError(f"bad --where {item!r}: use KEY=VALUE, KEY one of {KEYS_HELP}")
        check_keys([key], option="--where")
        where[key] = value.lower() if key == "task" else value  # task ids are shown as lower-case hex
    return where


def check_keys(keys: list[str], option: str = "--by") -> None:
    for key in keys:
        if key.startswith(LABEL_PREFIX):
            if not key[len(LABEL_PREFIX) :].strip():
                raise AnalyzerError(f"bad {option} key {key!r}: name the attribute, e.g. label:team")
        elif key not in GROUP_KEYS:
            raise AnalyzerError(f"unknown {option} key {key!r}: use one of {KEYS_HELP}")


def where_sql(where: dict[str, str], params: dict[str, Any]) -> list[str]:
    """SQL conditions over `charges AS c` for `--where` filters (no `task` key: it needs the task join);
    their values and label keys bound into `params`."""
    filters = [f"CAST({_key_sql(key, params)} AS VARCHAR) = $where_{i}" for i, key in enumerate(where)]
    params.update({f"where_{i}": value for i, value in enumerate(where.values())})
    return filters


def _key_sql(key: str, params: dict[str, Any]) -> str:
    """The SQL expression of a group key; a label's key is bound as parameters."""
    if not key.startswith(LABEL_PREFIX):
        return GROUP_KEYS[key]
    label = key[len(LABEL_PREFIX) :]
    names = [label, *(tag.format(key=label) for tag in LABEL_TAGS)]
    lookups = []
    for name in names:
        param = f"label_{len(params)}"
        params[param] = name
        lookups += [f"c.attributes[${param}]", f"c.resource_attributes[${param}]"]
    return f"coalesce({', '.join(lookups)})"


def cost_rows(analysis: Analysis, query: CostQuery) -> CostResult:
    """One row per group: the group keys, then the figures. Most expensive first; in time order when grouped
    by hour / day / week / month. No keys: one row, the figures over every call (as `totals`)."""
    prices = analysis.install_charges()
    if not query.by:
        return CostResult(query=query, rows=[_totals(analysis, query)], prices=prices)
    con = analysis.con
    params: dict[str, Any] = {"since": query.window.since, "until": query.window.until, "top": query.top}
    key_exprs = [_key_sql(key, params) for key in query.by]
    filters = [f"CAST({_key_sql(key, params)} AS VARCHAR) = $where_{i}" for i, key in enumerate(query.where)]
    params.update({f"where_{i}": value for i, value in enumerate(query.where.values())})
    task_join = ""
    if query.uses_task:
        analysis.install_tasks()
        task_join = "LEFT JOIN trace_tasks AS tt ON tt.trace_id = c.trace_id"
        if query.direct:
            filters.append(f"{TASK_EXPR} = c.trace_id")  # direct: only the task's own (top) trace
    aliases = [f"k{i}" for i in range(len(query.by))]
    time_aliases = [alias for alias, key in zip(aliases, query.by, strict=True) if key in TIME_KEYS]
    order = [*time_aliases, "total_cost_usd DESC NULLS LAST", *aliases]
    sql = load_sql("cost_by.sql").format(
        keys=", ".join(f"{expr} AS {alias}" for expr, alias in zip(key_exprs, aliases, strict=True)),
        key_names=", ".join(aliases),
        task_join=task_join,
        filters="".join(f" AND {f}" for f in filters),
        figures=FIGURE_SELECT,
        order=", ".join(order),
    )
    cursor = con.execute(sql, params)
    names = [*query.by, *(query.total_name if m == "total_cost_usd" else m for m in METRICS)]
    rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    return CostResult(query=query, rows=rows, prices=prices)


def totals(analysis: Analysis, window: TimeRange | None = None) -> dict[str, Any]:
    """The figures over every call in the window (default: all time): the report's headline, the notebooks',
    `analyze cost` without --by."""
    return cost_rows(analysis, CostQuery(by=[], window=window or TimeRange())).rows[0]


def _totals(analysis: Analysis, query: CostQuery) -> dict[str, Any]:
    params: dict[str, Any] = {"since": query.window.since, "until": query.window.until}
    filters = [f"CAST({_key_sql(key, params)} AS VARCHAR) = $where_{i}" for i, key in enumerate(query.where)]
    params.update({f"where_{i}": value for i, value in enumerate(query.where.values())})
    task_join = ""
    if query.uses_task:
        analysis.install_tasks()
        task_join = "LEFT JOIN trace_tasks AS tt ON tt.trace_id = c.trace_id"
    cursor = analysis.con.execute(
        f"SELECT {FIGURE_SELECT} FROM charges AS c {task_join} "  # noqa: S608 (fixed figure expressions)
        "WHERE ($since::TIMESTAMPTZ IS NULL OR c.start_time >= $since::TIMESTAMPTZ) "
        "AND ($until::TIMESTAMPTZ IS NULL OR c.start_time < $until::TIMESTAMPTZ)"
        + "".join(f" AND {f}" for f in filters),
        params,
    )
    row = cursor.fetchone()
    assert row is not None  # an aggregate without GROUP BY always has one row
    return dict(zip(FIGURE_NAMES, row, strict=True))


USAGE_GAP_COLUMNS = ("agent", "provider", "model", "calls_without_usage", "llm_calls")


def calls_without_usage(analysis: Analysis, window: TimeRange | None = None) -> list[dict[str, Any]]:
    """Per agent, provider and model that has any: the figure `calls_without_usage` (analyzer/figures.py: LLM
    calls that reported no usage at all, counted in `llm_calls`, their tokens and cost unknown) beside all its
    calls, most first. The usual cause is instrumentation that does not record usage (streamed responses
    without usage, an instrumentation library that drops it)."""
    rows = cost_rows(analysis, CostQuery(by=["agent", "provider", "model"], window=window or TimeRange())).rows
    gaps = [{key: row[key] for key in USAGE_GAP_COLUMNS} for row in rows if row["calls_without_usage"]]

    def order(row: dict[str, Any]) -> tuple:
        names = [(row[key] is None, row[key] or "") for key in ("agent", "provider", "model")]
        return (-row["calls_without_usage"], *names)

    return sorted(gaps, key=order)
