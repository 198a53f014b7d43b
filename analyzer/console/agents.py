"""The Agents page: what each agent costs (`analyze cost --by agent`), its tasks' cost distribution and
failures (`analyze tasks --by agent`), its idle-gap curves (`analyze idle`), and the KEDA ScaledObject +
SandboxWarmPool for one agent (`analyze recommend --agent A --emit all`), YAML to copy."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import plotly.graph_objects as go

from analyzer.analysis import Analysis
from analyzer.console.charts import figure_json, number
from analyzer.console.filters import Cli, Window, resolve_window
from analyzer.console.pages import Inputs, Section, Source
from analyzer.cost import CostQuery, cost_rows
from analyzer.dataset import AnalyzerError
from analyzer.idle import GroupIdle, analyze_idle
from analyzer.idle_charts import cooldown_figure, survival_figure, warm_pool_figure, with_gaps
from analyzer.recommend import emit_yaml, recommend_agent
from analyzer.sandbox_cost import kept_agent_gpu_costs
from analyzer.task_queries import task_stats

DEFAULT_WARM_HIT = 0.99


@dataclass(frozen=True)
class AgentFilters:
    window: Window
    agent: str | None  # the agent whose KEDA / warm-pool YAML is shown (None: the costliest with idle gaps)
    target_warm_hit: float
    source: Source

    def params(self) -> dict[str, Any]:
        return {**self.window.query(), "agent": self.agent, "warm_hit": self.target_warm_hit}


def parse(inputs: Inputs) -> AgentFilters:
    window = resolve_window(inputs.get("range"), inputs.get("since"), inputs.get("until"), inputs.newest)
    text = inputs.get("warm_hit")
    try:
        target = float(text) if text is not None else DEFAULT_WARM_HIT
    except ValueError:
        raise AnalyzerError(f"warm_hit must be a number between 0 and 1, not {text!r}") from None
    if not 0 <= target <= 1:
        raise AnalyzerError("warm_hit must be between 0 and 1")
    return AgentFilters(window, inputs.get("agent"), target, inputs.source)


@dataclass(frozen=True)
class AgentCosts:
    rows: list[dict[str, Any]]  # per agent: the cost figures and the task statistics (tasks it took)
    figure: str | None  # cost per task: p50 / p95 / max per agent
    empty: str | None
    cli: list[Cli]


def agent_costs(analysis: Analysis, f: AgentFilters) -> AgentCosts:
    costs = cost_rows(analysis, CostQuery(by=["agent"], window=f.window.range)).rows
    stats = {row["agent"]: row for row in task_stats(analysis, "agent", f.window.range)}
    rows = [{**row, "stats": stats.get(row["agent"])} for row in costs]
    with_tasks = [row for row in rows if row["stats"] and row["stats"]["p50_task_cost_usd"] is not None]
    figure = None
    if with_tasks:
        names = [row["agent"] or "(none)" for row in with_tasks]
        fig = go.Figure()
        for key, title in (("p50_task_cost_usd", "p50"), ("p95_task_cost_usd", "p95"), ("max_task_cost_usd", "max")):
            fig.add_bar(name=title, x=names, y=[number(row["stats"][key]) for row in with_tasks])
        fig.update_layout(barmode="group", yaxis_title="USD per task (inclusive)", xaxis_title="root agent")
        figure = figure_json(fig, yaxis={"type": "log"} if len(with_tasks) > 1 else {})
    empty = analysis.why_empty("LLM calls", f.window.range) if not rows else None
    cli = [
        f.source.cli("cost", "--by", "agent", *f.window.cli_args(), "--format", "json"),
        f.source.cli("tasks", "--by", "agent", *f.window.cli_args(), "--format", "json"),
    ]
    return AgentCosts(rows, figure, empty, cli)


@dataclass(frozen=True)
class IdleCurves:
    rows: list[dict[str, Any]]
    survival: str | None
    cooldown: str | None
    warm_pool: str | None
    cli: list[Cli]


def idle_groups(analysis: Analysis, f: AgentFilters) -> list[GroupIdle]:
    """`analyze idle --by agent` over the window: computed once per window, read by two sections."""
    since, until = f.window.range.since, f.window.range.until
    return analysis.memo(
        ("idle", "agent", since, until), lambda: analyze_idle(analysis.dataset, by="agent", since=since, until=until)
    )


def idle_curves(analysis: Analysis, f: AgentFilters) -> IdleCurves:
    groups = idle_groups(analysis, f)
    top = with_gaps(groups)
    cli = [f.source.cli("idle", *f.window.cli_args(), "--format", "json")]
    if not top:
        return IdleCurves([g.row() for g in groups], None, None, None, cli)
    return IdleCurves(
        [g.row() for g in groups],
        figure_json(survival_figure(top), title=None),
        figure_json(cooldown_figure(top), title=None),
        figure_json(warm_pool_figure(top), title=None),
        cli,
    )


@dataclass(frozen=True)
class Recommendation:
    agent: str | None
    agents: list[str]  # agents with two runs or more (what can be recommended for)
    yaml: str | None
    error: str | None  # why there is no recommendation
    cli: list[Cli]


def recommendation(analysis: Analysis, f: AgentFilters) -> Recommendation:
    groups = idle_groups(analysis, f)
    agents = [g.group for g in groups if g.survival]
    agent = f.agent or (agents[0] if agents else None)
    if agent is None:
        return Recommendation(None, agents, None, "no agent has two runs in this time range: nothing to replay", [])
    args = ["recommend", "--agent", agent, "--emit", "all", "--target-warm-hit", f"{f.target_warm_hit:g}"]
    cli = [f.source.cli(*args, *f.window.cli_args())]
    try:
        rec = recommend_agent(
            analysis.dataset,
            agent,
            target_warm_hit=f.target_warm_hit,
            since=f.window.range.since,
            until=f.window.range.until,
            gpu_prices_file=f.source.gpu_prices,
            idle=next((g for g in groups if g.group == agent), None),  # the page's analysis, not a second one
            gpu_costs=kept_agent_gpu_costs(analysis),  # once per dataset state (prepared by the server)
        )
    except AnalyzerError as err:
        return Recommendation(agent, agents, None, str(err), cli)
    return Recommendation(agent, agents, emit_yaml(rec, "all"), None, cli)


SECTIONS = (
    Section("costs", "Cost by agent", "agents_costs.html", agent_costs),
    Section("idle", "Idle gaps", "agents_idle.html", idle_curves),
    Section("recommend", "Warm pool and autoscaling", "agents_recommend.html", recommendation),
)
