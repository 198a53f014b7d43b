"""Plotly figures as the console's pages embed them: JSON that console.js hands to Plotly.newPlot (plotly.js
is served from the plotly package itself: no CDN)."""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go

LAYOUT: dict[str, Any] = {
    "margin": {"l": 60, "r": 20, "t": 40, "b": 50},
    "font": {"family": "system-ui, -apple-system, Segoe UI, sans-serif", "size": 12},
    "paper_bgcolor": "rgba(0,0,0,0)",
    "plot_bgcolor": "rgba(0,0,0,0)",
    "legend": {"orientation": "h", "y": -0.2},
    "height": 360,
}


def figure_json(figure: go.Figure, **layout: Any) -> str:
    """The figure as JSON with the console's layout (safe inside a <script type="application/json">)."""
    figure.update_layout(**{**LAYOUT, **layout})
    text = figure.to_json()
    assert text is not None  # to_json without a file returns the text
    return text.replace("</", "<\\/")


def number(value: Any) -> float:
    return float(value or 0)
