"""Idle-time curves of agent runs: arrivals, idle gaps, concurrency, cooldown and warm-pool curves.

Definitions (DESIGN.md "Idle curves, KEDA and warm pools"):

- An agent run is the span of an agent run as the receiver's stitching decides it (`agent_span_id` =
  `span_id`: a LangGraph graph's run, not each of its steps; not a wrapper), or, in spans written without
  attribution, a span with `category = 'agent'`; its start is an **arrival**. Runs are grouped by agent
  name, service or namespace (`--by`).
- The **idle gap** of an arrival (every arrival but a group's first) is the time from the moment the group
  last went idle, i.e. the latest end of all earlier runs, to the arrival; 0 when an earlier run is still in
  flight. It is what a pool scaled on this group's demand sees: the time it sat with nothing to do before
  this arrival (sql/idle_gaps.sql).
- **Survival** P(gap > t) over those gaps. With a cooldown c (KEDA `cooldownPeriod`, the step to zero), an
  arrival starts cold exactly when its gap > c, and every gap costs min(gap, c) idle pod-seconds before the
  pool scales to zero: cold-start fraction = P(gap > c), idle pod-seconds/day = E[min(gap, c)] x
  arrivals/day = sum(min(gap, c)) / observed days.
- The observed window is first to last arrival of the group; per-day rates divide by it, and
  arrivals/day counts the arrivals after the first (one per gap).
- **Concurrency**: runs are half-open [start, end). Busy fraction: the share of [first start, last end]
  with a run open; peak: the most runs open at once; p99: the level not exceeded during 99 % of the busy
  time (time-weighted).
- **Warm pool**: the fraction of claims that find a pool of N sandboxes empty, by replaying the arrivals
  (analyzer/warm_pool.py) with a refill time per sandbox, the **start-up time**: measured as the p90
  duration of the group's spans named `sandbox.startup` (emit one span from creating a sandbox until it is
  ready, attributed to the agent or at least with its service / namespace resource), else `--cold-start`,
  else 8 s. An explicit `--cold-start` wins over the measurement.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal

import duckdb
import numpy as np
import pyarrow as pa

from analyzer.dataset import AnalyzerError, Dataset, load_sql
from analyzer.warm_pool import PoolResult, sizes_curve

GroupBy = Literal["agent", "service", "namespace"]
DAY_S = 86_400.0
DEFAULT_COLD_START_S = 8.0
# Thresholds (seconds) of the survival curve and the candidate cooldownPeriods.
GRID_S: tuple[float, ...] = (0, 15, 30, 60, 120, 180, 300, 600, 900, 1200, 1800, 2700, 3600, 7200, 14400, 28800, 86400)
MAX_POOL_SIZE = 64


@dataclass(frozen=True)
class CooldownPoint:
    cooldown_s: float
    cold_start_fraction: float  # P(gap > cooldown)
    cold_starts_per_day: float | None
    idle_pod_seconds_per_day: float | None


@dataclass
class GroupIdle:
    group: str
    arrivals: int
    window_s: float  # first to last arrival
    p50_duration_s: float
    p50_gap_s: float | None
    p90_gap_s: float | None
    p99_gap_s: float | None
    busy_fraction: float
    peak_concurrency: int
    p99_concurrency: int
    cold_start_s: float
    cold_start_source: str
    survival: list[tuple[float, float]] = field(default_factory=list)  # (t, P(gap > t))
    cooldowns: list[CooldownPoint] = field(default_factory=list)
    warm_pool: list[PoolResult] = field(default_factory=list)
    scale_up_gaps: list[float] | None = None  # see scale_up_gaps(); None: not asked for
    arrivals_ns: list[int] | None = None  # the runs' start times, ascending; None: not asked for

    @property
    def arrivals_per_day(self) -> float | None:
        return (self.arrivals - 1) / (self.window_s / DAY_S) if self.window_s > 0 else None

    def row(self) -> dict[str, Any]:
        """The flat figures (table and csv)."""
        return {
            "group": self.group,
            "arrivals": self.arrivals,
            "arrivals_per_day": self.arrivals_per_day,
            "p50_gap_s": self.p50_gap_s,
            "p90_gap_s": self.p90_gap_s,
            "p99_gap_s": self.p99_gap_s,
            "busy_fraction": self.busy_fraction,
            "peak_concurrency": self.peak_concurrency,
            "p99_concurrency": self.p99_concurrency,
            "cold_start_s": self.cold_start_s,
        }

    def curves(self) -> dict[str, Any]:
        return {
            "survival": [{"t_s": t, "p_gap_longer": p} for t, p in self.survival],
            "cooldown": [vars(point) for point in self.cooldowns],
            "warm_pool": [
                {"size": r.size, "empty_fraction": r.empty_fraction, "empty_claims": r.empty_claims}
                for r in self.warm_pool
            ],
            "cold_start_source": self.cold_start_source,
        }


def analyze_idle(
    ds: Dataset,
    *,
    by: GroupBy = "agent",
    since: datetime | None = None,
    until: datetime | None = None,
    namespace: str | None = None,
    group: str | None = None,
    cold_start_s: float | None = None,
    grid: tuple[float, ...] = GRID_S,
    max_pool_size: int = MAX_POOL_SIZE,
    with_scale_up_gaps: bool = False,
    with_arrivals: bool = False,
) -> list[GroupIdle]:
    """Idle figures and curves per group, busiest group first (`scale_up_gaps`, `arrivals_ns` filled when asked)."""
    if by not in ("agent", "service", "namespace"):
        raise AnalyzerError(f"--by must be agent, service or namespace, not {by!r}")
    if cold_start_s is not None and cold_start_s < 0:
        raise AnalyzerError("--cold-start must be >= 0")
    filters = {"by": by, "since": since, "until": until, "namespace": namespace}
    con = ds.con
    con.execute(load_sql("idle_runs.sql"), {**filters, "group": group})
    con.execute(load_sql("idle_gaps.sql"))
    install_idle_levels(con)
    groups = [_group_from_summary(row) for row in _dicts(con.execute(load_sql("idle_summary.sql")))]
    by_name = {g.group: g for g in groups}

    startups = {row["grp"]: row for row in _dicts(con.execute(load_sql("idle_startup.sql"), filters))}
    for g in groups:
        if cold_start_s is not None:
            g.cold_start_s, g.cold_start_source = cold_start_s, "--cold-start"
        elif g.group in startups:
            found = startups[g.group]
            g.cold_start_s = found["p90_startup_s"]
            g.cold_start_source = f"p90 of {found['n_startups']} sandbox.startup spans"

    for row in _dicts(con.execute(load_sql("idle_curves.sql"), {"grid": list(grid)})):
        g = by_name[row["grp"]]
        days = g.window_s / DAY_S
        g.survival.append((row["t_s"], row["n_longer"] / row["n_gaps"]))
        g.cooldowns.append(
            CooldownPoint(
                cooldown_s=row["t_s"],
                cold_start_fraction=row["n_longer"] / row["n_gaps"],
                cold_starts_per_day=row["n_longer"] / days if days > 0 else None,
                idle_pod_seconds_per_day=row["idle_s"] / days if days > 0 else None,
            )
        )

    for name, arrivals_ns in con.execute(load_sql("idle_arrivals.sql")).fetchall():
        g = by_name[name]
        g.warm_pool = sizes_curve(arrivals_ns, g.cold_start_s, max_pool_size)
        if with_arrivals:
            g.arrivals_ns = list(arrivals_ns)
    if with_scale_up_gaps:
        for g in groups:
            g.scale_up_gaps = []
        for name, starts_ns, ends_ns in con.execute(load_sql("idle_intervals.sql")).fetchall():
            by_name[name].scale_up_gaps = scale_up_gaps(starts_ns, ends_ns)
    return groups


def install_idle_levels(con: duckdb.DuckDBPyConnection) -> None:
    """Table idle_levels(grp, level, level_ns): per group of idle_runs, the time (ns) spent at each concurrency
    level between its first and last event (runs half-open [start, end); the starts and ends at one instant
    net out, and an instant where they cancel out still cuts the time). What the summary's concurrency
    figures sum (sql/idle_summary.sql). Integer sums, so exactly what a running sum over the sorted events
    gives in SQL, ~4x faster in NumPy than as a window query (~0.2 s there at 100 k tasks)."""
    runs = con.sql(
        "SELECT grp, list(start_ns) FILTER (WHERE start_ns IS NOT NULL) AS starts, "
        "list(end_ns) FILTER (WHERE end_ns IS NOT NULL) AS ends FROM idle_runs GROUP BY grp"
    ).to_arrow_table()
    groups: list[str] = []
    levels: list[np.ndarray] = []
    spent: list[np.ndarray] = []
    names = runs.column("grp").to_pylist()
    all_starts, all_ends = (_int_lists(runs.column(name)) for name in ("starts", "ends"))
    for grp, starts, ends in zip(names, all_starts, all_ends, strict=True):
        times = np.concatenate([starts, ends])
        deltas = np.repeat(np.array([1, -1], dtype=np.int64), [len(starts), len(ends)])
        order = np.argsort(times, kind="stable")
        times, deltas = times[order], deltas[order]
        first = np.flatnonzero(np.r_[True, times[1:] != times[:-1]]) if len(times) else np.empty(0, np.int64)
        level = np.cumsum(np.add.reduceat(deltas, first)) if len(first) else np.empty(0, np.int64)
        duration = np.diff(times[first])  # each instant to the next; the last has none
        found, where = np.unique(level[:-1], return_inverse=True)
        total = np.zeros(len(found), dtype=np.int64)
        np.add.at(total, where, duration)
        groups += [grp] * len(found)
        levels.append(found)
        spent.append(total)
    table = pa.table(
        {
            "grp": pa.array(groups, pa.string()),
            "level": pa.array(np.concatenate(levels) if levels else [], pa.int64()),
            "level_ns": pa.array(np.concatenate(spent) if spent else [], pa.int64()),
        }
    )
    con.register("_idle_levels_arrow", table)
    try:  # HUGEINT: the type of the SQL sums these replace
        con.execute(
            "CREATE OR REPLACE TEMP TABLE idle_levels AS "
            "SELECT grp, level::HUGEINT AS level, level_ns::HUGEINT AS level_ns FROM _idle_levels_arrow"
        )
    finally:
        con.unregister("_idle_levels_arrow")


def _int_lists(column: pa.ChunkedArray) -> list[np.ndarray]:
    """A column of lists of BIGINT (NULL: empty) as one int64 array per row, without Python ints."""
    lists = column.combine_chunks()
    values = lists.values.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)  # no NULLs: filtered out
    offsets = lists.offsets.to_numpy()
    valid = lists.is_valid().to_numpy(zero_copy_only=False)
    empty = np.empty(0, dtype=np.int64)
    return [values[offsets[j] : offsets[j + 1]] if valid[j] else empty for j in range(len(lists))]


def with_replay_inputs(
    ds: Dataset,
    g: GroupIdle,
    *,
    by: GroupBy = "agent",
    since: datetime | None = None,
    until: datetime | None = None,
    namespace: str | None = None,
) -> GroupIdle:
    """A copy of one group's figures (from analyze_idle over the same window) with its arrivals and scale-up
    gaps, as analyze_idle(..., with_scale_up_gaps=True, with_arrivals=True) gives them: for a caller that
    analyzed every group without them (the console's Agents page, which keeps that analysis per window and
    replays one agent)."""
    con = ds.con
    filters = {"by": by, "since": since, "until": until, "namespace": namespace, "group": g.group}
    con.execute(load_sql("idle_runs.sql"), filters)
    arrivals = con.execute(load_sql("idle_arrivals.sql")).fetchall()
    intervals = con.execute(load_sql("idle_intervals.sql")).fetchall()
    return replace(
        g,
        arrivals_ns=list(arrivals[0][1]) if arrivals else [],
        scale_up_gaps=scale_up_gaps(intervals[0][1], intervals[0][2]) if intervals else [],
    )


def scale_up_gaps(starts_ns: list[int], ends_ns: list[int]) -> list[float]:
    """Idle gaps of the 2nd, 3rd, ... replica: for each concurrency level k >= 2, the time (s) from the moment
    the number of runs open dropped below k to the next moment it reached k again. A replica released when
    demand drops is needed again after that gap: the HPA's scale-down stabilization window plays the role
    `cooldownPeriod` plays for the last replica. Both lists ascending; events at one instant net out
    (runs are half-open [start, end))."""
    gaps: list[float] = []
    dropped_at: dict[int, int] = {}  # level -> when concurrency last fell below it
    level = i = j = 0
    while i < len(starts_ns):
        t = starts_ns[i] if j >= len(ends_ns) else min(starts_ns[i], ends_ns[j])
        net = 0
        while i < len(starts_ns) and starts_ns[i] == t:
            net, i = net + 1, i + 1
        while j < len(ends_ns) and ends_ns[j] == t:
            net, j = net - 1, j + 1
        new_level = level + net
        for k in range(max(level + 1, 2), new_level + 1):
            if k in dropped_at:
                gaps.append((t - dropped_at.pop(k)) / 1e9)
        for k in range(max(new_level + 1, 2), level + 1):
            dropped_at[k] = t
        level = new_level
    return gaps


def _dicts(cursor: Any) -> list[dict[str, Any]]:
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _group_from_summary(row: dict[str, Any]) -> GroupIdle:
    return GroupIdle(
        group=row["grp"],
        arrivals=row["arrivals"],
        window_s=(row["last_start_ns"] - row["first_start_ns"]) / 1e9,
        p50_duration_s=row["p50_duration_s"],
        p50_gap_s=row["p50_gap_s"],
        p90_gap_s=row["p90_gap_s"],
        p99_gap_s=row["p99_gap_s"],
        busy_fraction=row["busy_fraction"],
        peak_concurrency=int(row["peak_concurrency"]),
        p99_concurrency=int(row["p99_concurrency"]),
        cold_start_s=DEFAULT_COLD_START_S,
        cold_start_source="default, no sandbox.startup spans",
    )
