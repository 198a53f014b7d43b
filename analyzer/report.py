"""A self-contained HTML report (plotly.js inline, works offline): cost by agent over time, by model,
top tasks, unpriced share, plus sections other analyzer modules contribute.

Adding a section: a callable `(dataset: Dataset) -> list[tuple[str, object]]` returning (title, content)
pairs, content a plotly Figure or an HTML string. Either append it to `SECTIONS`, or define a function
`report_sections(dataset)` with that signature in one of `SECTION_MODULES` (e.g. `analyzer.idle`): the
report imports those modules when it is built and includes their sections after the cost sections.
The dataset passed has `span_costs` installed (analyzer.cost.install_costs).
"""

from __future__ import annotations

import html
import importlib
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

from analyzer.cost import CostQuery, cost_rows, install_costs
from analyzer.dataset import Dataset, load_sql
from analyzer.pricing import PriceTable

Section = Callable[[Dataset], list[tuple[str, Any]]]
TOP_AGENTS = 10
TOP_TASKS = 15
SECTION_MODULES = ("analyzer.idle", "analyzer.gpu")


def _money(value: Any) -> float:
    return float(value or 0)


def _time_bucket(dataset: Dataset) -> str:
    """Days for a long dataset, hours for a day or so, minutes for a short demo."""
    first, last = dataset.con.execute("SELECT min(start_time), max(start_time) FROM span_costs").fetchone()
    if first is None:
        return "1 day"
    hours = (last - first).total_seconds() / 3600
    return "1 day" if hours > 72 else "1 hour" if hours > 3 else "1 minute"


def cost_over_time(dataset: Dataset, prices: PriceTable) -> list[tuple[str, Any]]:
    bucket = _time_bucket(dataset)
    rows = dataset.con.execute(load_sql("cost_over_time.sql"), {"bucket": bucket, "top": TOP_AGENTS}).fetchall()
    figure = go.Figure()
    for agent in dict.fromkeys(r[1] for r in rows):
        points = [r for r in rows if r[1] == agent]
        figure.add_bar(name=agent, x=[r[0] for r in points], y=[_money(r[2]) for r in points])
    figure.update_layout(barmode="stack", yaxis_title="USD", xaxis_title=f"start time ({bucket} buckets)")
    return [(f"Cost by agent over time (top {TOP_AGENTS} agents, the rest as 'other')", figure)]


def cost_by_model(dataset: Dataset, prices: PriceTable) -> list[tuple[str, Any]]:
    rows, _ = cost_rows(dataset, CostQuery(by=["model"]), prices=prices)
    rows = [r for r in rows if r["cost_usd"] is not None]
    figure = go.Figure(go.Bar(x=[_money(r["cost_usd"]) for r in rows], y=[r["model"] for r in rows], orientation="h"))
    figure.update_layout(xaxis_title="USD", yaxis={"autorange": "reversed"}, height=max(300, 28 * len(rows)))
    return [("Cost by model", figure)]


def top_tasks(dataset: Dataset, prices: PriceTable) -> list[tuple[str, Any]]:
    rows, _ = cost_rows(dataset, CostQuery(by=["task"], inclusive=True, top=TOP_TASKS), prices=prices)
    header = "<tr><th>task</th><th>LLM calls</th><th>input tokens</th><th>output tokens</th><th>cost USD</th><th>unpriced calls</th></tr>"
    body = "".join(
        f"<tr><td><code>{html.escape(r['task'])}</code></td><td>{r['llm_calls']:,}</td><td>{r['input_tokens']:,}</td>"
        f"<td>{r['output_tokens']:,}</td><td>{_money(r['cost_usd']):,.4f}</td><td>{r['unpriced_calls']:,}</td></tr>"
        for r in rows
    )
    return [(f"Top {TOP_TASKS} tasks (inclusive of every sub-agent)", f"<table>{header}{body}</table>")]


def unpriced_share(dataset: Dataset, prices: PriceTable) -> list[tuple[str, Any]]:
    rows, _ = cost_rows(dataset, CostQuery(by=["provider", "model"]), prices=prices)
    unpriced = sum(r["unpriced_calls"] for r in rows)
    priced = sum(r["llm_calls"] for r in rows) - unpriced
    figure = go.Figure(go.Pie(labels=["priced calls", "unpriced calls"], values=[priced, unpriced], hole=0.5))
    listed = "".join(
        f"<li><code>{html.escape(p or '-')}/{html.escape(m)}</code>: {html.escape(reason)}</li>"
        for (p, m), reason in sorted(prices.unpriced.items())
    )
    note = f"<p>{unpriced:,} of {priced + unpriced:,} calls have no price.</p><ul>{listed}</ul>"
    return [("Unpriced share (models with no price: add them to a --prices file)", figure), ("Unpriced models", note)]


COST_SECTIONS = [cost_over_time, cost_by_model, top_tasks, unpriced_share]
SECTIONS: list[Section] = []  # sections other modules append, shown after the cost sections


def _module_sections() -> list[Section]:
    found = []
    for name in SECTION_MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        if callable(getattr(module, "report_sections", None)):
            found.append(module.report_sections)
    return found


def _content(item: Any) -> str:
    if isinstance(item, go.Figure):
        return item.to_html(full_html=False, include_plotlyjs=False)
    return str(item)


def build_report(dataset: Dataset, prices_file: Path | None = None) -> str:
    """The report as one HTML string (plotly.js inline: no network needed to view it)."""
    prices = install_costs(dataset, prices_file)
    sections = [item for section in COST_SECTIONS for item in section(dataset, prices)]
    for section in [*SECTIONS, *_module_sections()]:
        sections += section(dataset)
    parts = [f"<section><h2>{html.escape(title)}</h2>{_content(item)}</section>" for title, item in sections]
    totals = dataset.con.execute(load_sql("cost_totals.sql")).fetchone()
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    summary = (
        f"<p>{html.escape(str(dataset.root))}: {totals[0]:,} LLM calls, "
        f"<b>${_money(totals[1]):,.2f}</b> computed cost, {totals[2]:,} unpriced calls, "
        f"${_money(totals[3]):,.2f} provider-reported. Generated {generated}.</p>"
    )
    return REPORT_PAGE.format(plotly=get_plotlyjs(), summary=summary, sections="\n".join(parts))


def write_report(dataset: Dataset, out: Path, prices_file: Path | None = None) -> Path:
    text = build_report(dataset, prices_file)
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
{summary}
{sections}
</body></html>
"""
