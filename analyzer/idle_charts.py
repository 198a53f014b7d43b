"""Plotly charts of the idle curves (analyzer/idle.py), shared by the notebook and the HTML report."""

from __future__ import annotations

import html
from collections.abc import Sequence

import plotly.graph_objects as go

from analyzer.dataset import Dataset
from analyzer.idle import GroupIdle, analyze_idle

MAX_GROUPS = 8  # more lines than this stop being readable


def with_gaps(groups: Sequence[GroupIdle], limit: int = MAX_GROUPS) -> list[GroupIdle]:
    """The busiest groups that have at least one idle gap (two runs)."""
    return [g for g in groups if g.survival][:limit]


def survival_figure(groups: Sequence[GroupIdle]) -> go.Figure:
    fig = go.Figure()
    for g in groups:
        # a log axis cannot show t = 0: draw it at 1 s (the step is flat below the first threshold anyway)
        fig.add_trace(
            go.Scatter(
                x=[max(t, 1) for t, _ in g.survival],
                y=[p for _, p in g.survival],
                mode="lines+markers",
                line_shape="hv",
                name=g.group,
            )
        )
    fig.update_layout(
        title="Idle-gap survival: share of runs arriving after an idle gap longer than t",
        xaxis={"type": "log", "title": "t (s)"},
        yaxis={"title": "P(idle gap > t)", "range": [0, 1.02]},
    )
    return fig


def cooldown_figure(groups: Sequence[GroupIdle]) -> go.Figure:
    fig = go.Figure()
    for g in groups:
        points = [p for p in g.cooldowns if p.idle_pod_seconds_per_day is not None]
        fig.add_trace(
            go.Scatter(
                x=[(p.idle_pod_seconds_per_day or 0) / 3600 for p in points],
                y=[p.cold_start_fraction for p in points],
                text=[f"cooldownPeriod {p.cooldown_s:.0f} s" for p in points],
                mode="lines+markers",
                name=g.group,
            )
        )
    fig.update_layout(
        title="Cooldown trade-off: cold starts against idle pod-hours per day",
        xaxis={"title": "idle pod-hours per day"},
        yaxis={"title": "cold-start fraction"},
    )
    return fig


def warm_pool_figure(groups: Sequence[GroupIdle]) -> go.Figure:
    fig = go.Figure()
    for g in groups:
        fig.add_trace(
            go.Scatter(
                x=[r.size for r in g.warm_pool],
                y=[r.empty_fraction for r in g.warm_pool],
                mode="lines+markers",
                name=f"{g.group} ({g.cold_start_s:g} s start-up)",
            )
        )
    fig.update_layout(
        title="Warm pool: claims that find the pool empty (replay of the observed arrivals)",
        xaxis={"title": "SandboxWarmPool spec.replicas"},
        yaxis={"title": "fraction of claims finding the pool empty"},
    )
    return fig


def summary_table(groups: Sequence[GroupIdle], limit: int = 20) -> str:
    """An HTML table of the idle figures of the busiest groups (values escaped)."""
    columns = ["group", "arrivals", "p50_gap_s", "p90_gap_s", "p99_gap_s", "busy_fraction", "peak_concurrency"]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = ""
    for g in groups[:limit]:
        row = g.row()
        cells = "".join(f"<td>{html.escape(_cell(row[c]))}</td>" for c in columns)
        body += f"<tr>{cells}</tr>"
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.3f}" if value < 1 else f"{value:,.0f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def idle_sections(ds: Dataset) -> list[tuple[str, object]]:
    """Report sections: the idle figures per agent and the three curves of the busiest agents."""
    groups = analyze_idle(ds, by="agent")
    if not groups:
        return [("Idle time by agent", "<p>No agent runs in this dataset.</p>")]
    sections: list[tuple[str, object]] = [("Idle time by agent (busiest first)", summary_table(groups))]
    top = with_gaps(groups)
    if top:
        sections += [
            ("Idle-gap survival", survival_figure(top)),
            ("Cooldown trade-off", cooldown_figure(top)),
            ("Warm-pool size (replay)", warm_pool_figure(top)),
        ]
    return sections
