"""A self-contained HTML report (plotly.js inline, works offline): the headline figures, cost by agent over
time, by model, top tasks, unpriced share, then the GPU and idle sections.

Every number comes from the query layer (`analyzer.cost`, `analyzer.task_queries`, `analyzer.gpu`,
`analyzer.idle`), so the report shows the CLI's figures; the headline's exact values are also embedded as
JSON (`<script type="application/json" id="agentmeter-figures">`) for machines and tests.

Adding a section: a function `(analysis: Analysis) -> list[tuple[str, object]]` returning (title, content)
pairs, content a plotly Figure or an HTML string, listed in `SECTIONS`.
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

from analyzer.analysis import Analysis
from analyzer.budgets import Budget, budget_status
from analyzer.cost import CostQuery, cost_rows, totals
from analyzer.dataset import load_sql
from analyzer.gpu_charts import gpu_sections
from analyzer.idle_charts import idle_sections
from analyzer.output import money
from analyzer.runaway import runaway_tasks
from analyzer.task_queries import TaskQuery, list_tasks

Section = Callable[[Analysis], list[tuple[str, Any]]]
TOP_AGENTS = 10
TOP_TASKS = 15


def _money(value: Any) -> float:
    return float(value or 0)


def _time_bucket(analysis: Analysis) -> str:
    """Days for a long dataset, hours for a day or so, minutes for a short demo."""
    found = analysis.con.execute("SELECT min(start_time), max(start_time) FROM charges").fetchone()
    first, last = found if found else (None, None)
    if first is None or last is None:
        return "1 day"
    hours = (last - first).total_seconds() / 3600
    return "1 day" if hours > 72 else "1 hour" if hours > 3 else "1 minute"


def cost_over_time(analysis: Analysis) -> list[tuple[str, Any]]:
    bucket = _time_bucket(analysis)
    rows = analysis.con.execute(load_sql("cost_over_time.sql"), {"bucket": bucket, "top": TOP_AGENTS}).fetchall()
    figure = go.Figure()
    for agent in dict.fromkeys(r[1] for r in rows):
        points = [r for r in rows if r[1] == agent]
        figure.add_bar(name=agent, x=[r[0] for r in points], y=[_money(r[2]) for r in points])
    figure.update_layout(barmode="stack", yaxis_title="USD", xaxis_title=f"start time ({bucket} buckets)")
    return [(f"Cost by agent over time (top {TOP_AGENTS} agents, the rest as 'other')", figure)]


def cost_by_model(analysis: Analysis) -> list[tuple[str, Any]]:
    rows = [r for r in cost_rows(analysis, CostQuery(by=["model"])).rows if r["total_cost_usd"] is not None]
    figure = go.Figure(
        go.Bar(x=[_money(r["total_cost_usd"]) for r in rows], y=[r["model"] for r in rows], orientation="h")
    )
    figure.update_layout(xaxis_title="USD", yaxis={"autorange": "reversed"}, height=max(300, 28 * len(rows)))
    return [("Cost by model", figure)]


def top_tasks(analysis: Analysis) -> list[tuple[str, Any]]:
    rows = list_tasks(analysis, TaskQuery(sort="cost", limit=TOP_TASKS))
    header = (
        "<tr><th>task</th><th>root agent</th><th>status</th><th>LLM calls</th><th>input tokens</th>"
        "<th>output tokens</th><th>unpriced calls</th><th>calls without usage</th><th>direct cost</th>"
        "<th>inclusive cost</th></tr>"
    )
    body = "".join(
        f"<tr><td><code>{html.escape(r['task_id'])}</code></td><td>{html.escape(r['root_agent'] or '-')}</td>"
        f"<td>{r['status']}</td><td>{r['llm_calls']:,}</td><td>{r['input_tokens']:,}</td>"
        f"<td>{r['output_tokens']:,}</td><td>{r['unpriced_calls']:,}</td><td>{r['calls_without_usage']:,}</td>"
        f"<td>{_usd(r['direct_cost_usd'])}</td>"
        f"<td>{_usd(r['inclusive_cost_usd'])}</td></tr>"
        for r in rows
    )
    return [(f"Top {TOP_TASKS} tasks (inclusive of every sub-agent)", f"<table>{header}{body}</table>")]


def unpriced_share(analysis: Analysis) -> list[tuple[str, Any]]:
    figures = totals(analysis)
    calls, unpriced, without_usage = figures["llm_calls"], figures["unpriced_calls"], figures["calls_without_usage"]
    priced = calls - unpriced - without_usage
    figure = go.Figure(
        go.Pie(
            labels=["priced calls", "unpriced calls", "calls without usage"],
            values=[priced, unpriced, without_usage],
            hole=0.5,
        )
    )
    listed = "".join(
        f"<li><code>{html.escape(p or '-')}/{html.escape(m)}</code>: {html.escape(reason)}</li>"
        for (p, m), reason in sorted(analysis.prices.unpriced.items())
    )
    note = f"<p>{unpriced:,} of {calls:,} calls have no price (tokens or GPU time).</p><ul>{listed}</ul>"
    note += (
        f"<p>{without_usage:,} of {calls:,} calls reported no usage: their tokens and cost are unknown "
        "(their instrumentation sent no token counts).</p>"
    )
    return [
        ("Unpriced share (models with no price: add them to a --prices file)", figure),
        ("Calls whose cost is unknown", note),
    ]


def gpu_section(analysis: Analysis) -> list[tuple[str, Any]]:
    return gpu_sections(analysis.dataset, analysis.gpu_prices_file)


def idle_section(analysis: Analysis) -> list[tuple[str, Any]]:
    return idle_sections(analysis.dataset)


def runaway_section(analysis: Analysis) -> list[tuple[str, Any]]:
    """The tasks `analyze runaway` lists (default limits), at most RUNAWAY_ROWS."""
    rows = runaway_tasks(analysis)
    if not rows:
        return [("Runaway tasks", "<p>No task passed a runaway limit (analyze runaway).</p>")]
    body = "".join(
        f"<tr><td>{html.escape(r.task_id[:16])}</td><td>{html.escape(r.root_agent)}</td><td>{r.reason}</td>"
        f"<td>{r.value:,.4g}</td><td>{r.threshold:,.4g} ({r.basis})</td></tr>"
        for r in rows[:RUNAWAY_ROWS]
    )
    more = f"<p>{len(rows) - RUNAWAY_ROWS} more: analyze runaway.</p>" if len(rows) > RUNAWAY_ROWS else ""
    table = "<table><tr><th>task</th><th>root agent</th><th>reason</th><th>value</th><th>limit</th></tr>"
    return [("Runaway tasks", table + body + "</table>" + more)]


def budget_section(analysis: Analysis, budgets: list[Budget], at: datetime) -> list[tuple[str, Any]]:
    """Each budget as `analyze budget` gives it (the same BudgetStatus rows)."""
    statuses = [budget_status(analysis, budget, at) for budget in budgets]
    body = "".join(
        f"<tr><td>{html.escape(s.budget.title)}</td><td>{html.escape(s.budget.scope)}</td><td>{s.budget.period}</td>"
        f"<td>{money(s.budget.amount_usd)}</td><td>{money(s.spend_usd)}</td><td>{money(s.burn_rate_usd_per_day)}</td>"
        f"<td>{money(s.forecast_usd)}</td><td>{s.status}</td>"
        f"<td>{_when(s.breached_at or s.forecast_breach_at)}</td></tr>"
        for s in statuses
    )
    head = (
        "<table><tr><th>budget</th><th>scope</th><th>period</th><th>amount</th><th>spend</th><th>burn/day</th>"
        "<th>forecast</th><th>status</th><th>breach</th></tr>"
    )
    return [(f"Budgets at {at:%Y-%m-%d %H:%M} UTC", head + body + "</table>")]


def _when(moment: datetime | None) -> str:
    return "-" if moment is None else moment.strftime("%Y-%m-%d %H:%M")


RUNAWAY_ROWS = 20
SECTIONS: list[Section] = [
    cost_over_time, cost_by_model, top_tasks, unpriced_share, runaway_section, gpu_section, idle_section
]  # fmt: skip


def _content(item: Any) -> str:
    if isinstance(item, go.Figure):
        return item.to_html(full_html=False, include_plotlyjs=False)
    return str(item)


def _usd(value: Any) -> str:
    return "-" if value is None else money(value)


def build_report(analysis: Analysis, budgets: list[Budget] | None = None, at: datetime | None = None) -> str:
    """The report as one HTML string (plotly.js inline: no network needed to view it); with `budgets`, a
    budget section as of `at` (default now). Every section sums the charges rows: they are computed once
    (`Analysis.keep`), not once per section from the Parquet."""
    analysis.install_charges()
    analysis.keep("charges")
    sections = [item for section in SECTIONS for item in section(analysis)]
    if budgets:
        sections[:0] = budget_section(analysis, budgets, at or datetime.now(UTC))
    parts = [f"<section><h2>{html.escape(title)}</h2>{_content(item)}</section>" for title, item in sections]
    figures = totals(analysis)
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    summary = (
        f"<p>{html.escape(str(analysis.root))}: <b>{_usd(figures['total_cost_usd'])}</b> total cost "
        f"({_usd(figures['token_cost_usd'])} tokens + {_usd(figures['gpu_busy_cost_usd'])} GPU busy time), "
        f"{figures['llm_calls']:,} LLM calls, {figures['unpriced_calls']:,} unpriced calls, "
        f"{figures['calls_without_usage']:,} calls without usage (tokens and cost unknown), "
        f"{_usd(figures['reported_cost_usd'])} provider-reported. Generated {generated}.</p>"
    )
    exact = json.dumps({"headline": {k: _json_number(v) for k, v in figures.items()}}).replace("</", "<\\/")
    return REPORT_PAGE.format(plotly=get_plotlyjs(), summary=summary, sections="\n".join(parts), figures=exact)


def _json_number(value: Any) -> Any:
    return value if value is None or isinstance(value, int) else float(value)


def write_report(analysis: Analysis, out: Path, budgets: list[Budget] | None = None) -> Path:
    text = build_report(analysis, budgets)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(out)
    return out


REPORT_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>agentmeter report</title>
<script type="text/javascript">{plotly}</script>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }}
table {{ border-collapse: collapse; }} td, th {{ padding: 4px 10px; border-bottom: 1px solid #ddd; text-align: right; }}
td:first-child, th:first-child {{ text-align: left; }} section {{ margin-bottom: 2.5em; }}
</style></head>
<body><h1>agentmeter: what your agents cost</h1>
<script type="application/json" id="agentmeter-figures">{figures}</script>
{summary}
{sections}
</body></html>
"""
