"""Plotly figures of GPU slice use, for `analyze report` and the GPU notebook."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import plotly.graph_objects as go

from analyzer.dataset import Dataset
from analyzer.gpu import gpu_report, gpu_timeline


def timeline_step_seconds(dataset: Dataset) -> int:
    """A bucket giving about 100 points over the allocations' time span: one minute to one hour."""
    row = dataset.con.execute(
        "SELECT coalesce(epoch(max(last_seen)) - epoch(min(first_seen)), 0) FROM gpu_allocations"
    ).fetchone()
    span = row[0] if row else 0
    return int(min(3600, max(60, span / 100)))


def utilization_timeline(rows: list[dict[str, Any]], step_seconds: int = 3600) -> go.Figure:
    figure = go.Figure()
    for slice_id in sorted({row["slice_id"] for row in rows}):
        points = [row for row in rows if row["slice_id"] == slice_id]
        figure.add_trace(
            go.Scatter(
                x=[p["time"].isoformat() for p in points],
                y=[p["utilization"] for p in points],
                mode="lines+markers",  # a slice allocated within one bucket is a single point
                name=slice_id.rsplit("/", 1)[-1],
            )
        )
    bucket = (
        "hour"
        if step_seconds == 3600
        else f"{step_seconds // 60} min"
        if step_seconds % 60 == 0
        else f"{step_seconds} s"
    )
    figure.update_layout(title=f"Slice utilization per {bucket}", yaxis_title="busy / allocated", yaxis_range=[0, 1])
    return figure


def idle_by_namespace(rows: list[dict[str, Any]]) -> go.Figure:
    names = [r["namespace"] for r in rows]
    figure = go.Figure(
        [
            go.Bar(x=names, y=[r["idle_slice_hours"] for r in rows], name="idle"),
            go.Bar(x=names, y=[r["busy_slice_hours"] for r in rows], name="busy"),
        ]
    )
    figure.update_layout(barmode="stack", title="Allocated slice-hours by namespace", yaxis_title="slice-hours")
    return figure


def cost_by_agent(rows: list[dict[str, Any]]) -> go.Figure:
    names = [r["agent"] or "(no span)" for r in rows]
    figure = go.Figure([go.Bar(x=names, y=[r["busy_cost_usd"] for r in rows], name="busy GPU cost")])
    figure.update_layout(title="GPU cost of busy slice time by agent", yaxis_title="USD")
    return figure


def gpu_sections(dataset: Dataset, gpu_prices_file: Path | None = None) -> list[tuple[str, Any]]:
    if not dataset.has_rows("gpu_allocations"):
        return []
    con = dataset.con
    namespaces = gpu_report(con, "namespace", gpu_prices_file=gpu_prices_file)
    agents = gpu_report(con, "agent", gpu_prices_file=gpu_prices_file)
    step = timeline_step_seconds(dataset)
    timeline = gpu_timeline(con, step_seconds=step)  # after gpu_report installed the views (whole window)
    return [
        ("GPU slice utilization", utilization_timeline(timeline, step)),
        ("Idle GPU slice-hours by namespace", idle_by_namespace(namespaces)),
        ("GPU cost by agent", cost_by_agent(agents)),
    ]
