"""The GPU page: each slice's allocated / busy / idle slice-hours and their cost (`analyze gpu --by slice`),
the utilization timeline, and idle cost by namespace (`analyze gpu --by namespace`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from analyzer.analysis import Analysis
from analyzer.console.charts import figure_json
from analyzer.console.filters import Cli, Window, resolve_window
from analyzer.console.pages import Inputs, Section, Source
from analyzer.gpu import gpu_report, gpu_timeline
from analyzer.gpu_charts import idle_by_namespace, utilization_timeline

TIMELINE_POINTS = 120  # about this many buckets over the window


@dataclass(frozen=True)
class GpuFilters:
    window: Window
    source: Source

    def params(self) -> dict[str, Any]:
        return self.window.query()


def parse(inputs: Inputs) -> GpuFilters:
    window = resolve_window(inputs.get("range"), inputs.get("since"), inputs.get("until"), inputs.newest)
    return GpuFilters(window, inputs.source)


@dataclass(frozen=True)
class Slices:
    rows: list[dict[str, Any]]
    namespaces: list[dict[str, Any]]
    timeline: str | None
    by_namespace: str | None
    empty: str | None
    cli: list[Cli]


def slices(analysis: Analysis, f: GpuFilters) -> Slices:
    since, until = f.window.range.since, f.window.range.until
    cli = [
        f.source.cli("gpu", "--by", "slice", *f.window.cli_args(), "--format", "json"),
        f.source.cli("gpu", "--by", "namespace", *f.window.cli_args(), "--format", "json"),
    ]
    con = analysis.con
    prices = f.source.gpu_prices
    namespaces = gpu_report(con, "namespace", since=since, until=until, gpu_prices_file=prices)
    rows = gpu_report(con, "slice", since=since, until=until, gpu_prices_file=prices)
    if not rows:
        where = f" {f.window.range.describe()}" if not f.window.range.is_open else ""
        empty = (
            f"no GPU slice allocations{where}: the receiver's kubelet PodResources poller writes them "
            "(collector-ext serve --podresources-socket; deploy/overlays/gpu)"
        )
        return Slices([], [], None, None, empty, cli)
    step = _step(con)
    timeline = gpu_timeline(con, step_seconds=step)  # the views gpu_report installed for this window
    return Slices(
        rows,
        namespaces,
        figure_json(utilization_timeline(timeline, step), title=None, yaxis={"range": [0, 1.02]}),
        figure_json(idle_by_namespace(namespaces), title=None),
        None,
        cli,
    )


def _step(con: Any) -> int:
    """A bucket giving about TIMELINE_POINTS points over the slices' time in the window: 1 min to 1 day."""
    row = con.execute("SELECT coalesce(max(seg_end) - min(seg_start), 0) FROM gpu_segments").fetchone()
    span = float(row[0]) if row and row[0] else 0.0
    return int(min(86_400, max(60, round(span / TIMELINE_POINTS / 60) * 60)))


SECTIONS = (Section("slices", "GPU slices", "gpu_slices.html", slices),)
