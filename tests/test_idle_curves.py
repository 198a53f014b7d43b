"""Idle curves (analyzer/idle.py, `analyze idle`) asserted exactly on constructed arrival sequences written
as real Parquet datasets and read back through DuckDB."""

from __future__ import annotations

import json
import math
from datetime import timedelta
from pathlib import Path

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from idle_datasets import BASE, Run, bursty, periodic, poisson, startup, write_runs
from test_warm_pool import brute_force_empty

from analyzer.cli import main
from analyzer.dataset import AnalyzerError, open_dataset
from analyzer.idle import GRID_S, analyze_idle, install_idle_levels, scale_up_gaps
from analyzer.idle_charts import idle_sections as report_sections

DAY = 86_400


def by_group(data_dir: Path, **kw) -> dict:
    return {g.group: g for g in analyze_idle(open_dataset(data_dir), **kw)}


def expected_gaps(runs: list[Run]) -> list[float]:
    """Independent definition: gap = max(0, start - latest end of all earlier runs), per arrival after the first."""
    ordered = sorted(runs, key=lambda r: (r.start_s, r.start_s + r.duration_s))
    gaps, idle_since = [], None
    for run in ordered:
        if idle_since is not None:
            gaps.append(max(0.0, run.start_s - idle_since))
        end = run.start_s + run.duration_s
        idle_since = end if idle_since is None else max(idle_since, end)
    return gaps


def interpolated_quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    low, high = math.floor(pos), math.ceil(pos)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def test_periodic_arrivals(data_dir: Path) -> None:
    write_runs(data_dir, periodic("p", 10, every_s=600, duration_s=60))
    g = by_group(data_dir)["p"]
    assert (g.arrivals, g.window_s, g.arrivals_per_day) == (10, 5400.0, 144.0)
    assert (g.p50_gap_s, g.p90_gap_s, g.p99_gap_s) == (540.0, 540.0, 540.0)
    assert g.busy_fraction == pytest.approx(600 / 5460)
    assert (g.peak_concurrency, g.p99_concurrency) == (1, 1)
    survival = dict(g.survival)
    assert [t for t, _ in g.survival] == list(GRID_S)
    assert survival[300] == 1.0 and survival[600] == 0.0
    cooldown = {p.cooldown_s: p for p in g.cooldowns}
    days = 5400 / DAY
    assert cooldown[300].cold_start_fraction == 1.0
    assert cooldown[300].cold_starts_per_day == pytest.approx(9 / days)
    assert cooldown[300].idle_pod_seconds_per_day == pytest.approx(9 * 300 / days)
    assert cooldown[600].cold_start_fraction == 0.0
    assert cooldown[600].idle_pod_seconds_per_day == pytest.approx(9 * 540 / days)
    # default start-up 8 s << 600 s period: one pooled sandbox serves every claim
    assert (g.cold_start_s, g.cold_start_source.startswith("default")) == (8.0, True)
    assert [(r.size, r.empty_claims) for r in g.warm_pool] == [(0, 10), (1, 0)]


def test_poisson_arrivals_match_an_independent_computation(data_dir: Path) -> None:
    runs = poisson("q", 300, mean_gap_s=120, duration_s=45, seed=42)
    write_runs(data_dir, runs)
    g = by_group(data_dir)["q"]
    gaps = expected_gaps(runs)
    assert g.arrivals == 300
    assert g.p50_gap_s == pytest.approx(interpolated_quantile(gaps, 0.5), abs=1e-9)
    assert g.p90_gap_s == pytest.approx(interpolated_quantile(gaps, 0.9), abs=1e-9)
    assert g.p99_gap_s == pytest.approx(interpolated_quantile(gaps, 0.99), abs=1e-9)
    days = (runs[-1].start_s - runs[0].start_s) / DAY
    for point in g.cooldowns:
        c = point.cooldown_s
        assert point.cold_start_fraction == sum(gap > c for gap in gaps) / len(gaps)
        assert point.idle_pod_seconds_per_day == pytest.approx(sum(min(gap, c) for gap in gaps) / days)
    arrivals = [round(r.start_s * 1e9) for r in runs]
    for result in g.warm_pool:
        assert result.empty_claims == brute_force_empty(arrivals, result.size, 8.0)
    assert g.warm_pool[-1].empty_claims == 0 and g.warm_pool[-2].empty_claims > 0


def test_bursty_arrivals_with_long_gaps_and_measured_startup(data_dir: Path) -> None:
    # 3 bursts of 4 runs 5 s apart lasting 10 s, bursts an hour apart; start-up spans of 12 s and 20 s
    write_runs(
        data_dir,
        bursty("b", 3, 4, inner_gap_s=5, pause_s=3600, duration_s=10) + [startup("b", 0, 12), startup("b", 100, 20)],
    )
    g = by_group(data_dir)["b"]
    assert g.arrivals == 12  # the start-up spans are not agent runs
    assert (g.p50_gap_s, g.p99_gap_s) == (0.0, 3575.0)
    assert dict(g.survival)[0] == pytest.approx(2 / 11)
    assert (g.peak_concurrency, g.p99_concurrency) == (2, 2)
    assert g.busy_fraction == pytest.approx(75 / 7225)
    assert g.cold_start_s == pytest.approx(12 + 0.9 * 8)  # p90 of the two start-up spans
    assert g.cold_start_source == "p90 of 2 sandbox.startup spans"
    # refills take 19.2 s > a burst's 15 s: each burst needs 4 pooled sandboxes
    assert [r.empty_claims for r in g.warm_pool] == [12, 9, 6, 3, 0]
    # an explicit --cold-start wins over the measurement: 4 s refills keep up with claims 5 s apart
    g4 = by_group(data_dir, cold_start_s=4.0)["b"]
    assert (g4.cold_start_s, g4.cold_start_source) == (4.0, "--cold-start")
    assert [r.empty_claims for r in g4.warm_pool] == [12, 0]


def test_grouping_filters_and_single_runs(data_dir: Path) -> None:
    runs = [
        Run("a1", 0, 10, service="svc-x", namespace="ns-1"),
        Run("a2", 100, 10, service="svc-x", namespace="ns-2"),
        Run("a1", 200, 10, service="svc-y", namespace="ns-1"),
        Run("a1", 300, 10, name="chat", category="llm"),  # not an agent run
    ]
    write_runs(data_dir, runs)
    agents = by_group(data_dir)
    assert {k: v.arrivals for k, v in agents.items()} == {"a1": 2, "a2": 1}
    lone = agents["a2"]
    assert (lone.p50_gap_s, lone.survival, lone.cooldowns, lone.arrivals_per_day) == (None, [], [], None)
    assert [(r.size, r.empty_claims) for r in lone.warm_pool] == [(0, 1), (1, 0)]
    assert {k: v.arrivals for k, v in by_group(data_dir, by="service").items()} == {"svc-x": 2, "svc-y": 1}
    namespaces = by_group(data_dir, by="namespace")
    assert {k: v.arrivals for k, v in namespaces.items()} == {"ns-1": 2, "ns-2": 1}
    assert namespaces["ns-1"].p50_gap_s == 190.0


def test_since_until_filter(data_dir: Path) -> None:
    write_runs(data_dir, periodic("p", 10, every_s=600, duration_s=60))
    ds = open_dataset(data_dir)
    groups = analyze_idle(ds, since=BASE + timedelta(seconds=1200), until=BASE + timedelta(seconds=3000))
    assert [(g.group, g.arrivals) for g in groups] == [("p", 3)]  # starts at 1200, 1800, 2400


def test_bad_arguments(data_dir: Path) -> None:
    write_runs(data_dir, periodic("p", 3, every_s=60, duration_s=1))
    with pytest.raises(AnalyzerError, match="--by"):
        analyze_idle(open_dataset(data_dir), by="pod")  # type: ignore[arg-type]
    with pytest.raises(AnalyzerError, match="--cold-start"):
        analyze_idle(open_dataset(data_dir), cold_start_s=-1)


def test_cli_json_carries_the_curves(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_runs(data_dir, periodic("p", 10, every_s=600, duration_s=60) + bursty("b", 2, 3, 5, 3600, 10))
    assert main(["idle", "--data", str(data_dir), "--format", "json", "--cold-start", "30s"]) == 0
    rows = {row["group"]: row for row in json.loads(capsys.readouterr().out)}
    assert set(rows) == {"p", "b"}
    p = rows["p"]
    assert (p["arrivals"], p["p50_gap_s"], p["cold_start_s"]) == (10, 540.0, 30.0)
    assert p["curves"]["survival"][0] == {"t_s": 0.0, "p_gap_longer": 1.0}
    assert p["curves"]["warm_pool"] == [
        {"size": 0, "empty_fraction": 1.0, "empty_claims": 10},
        {"size": 1, "empty_fraction": 0.0, "empty_claims": 0},
    ]
    assert p["curves"]["cooldown"][6] == {
        "cooldown_s": 300.0,
        "cold_start_fraction": 1.0,
        "cold_starts_per_day": pytest.approx(144.0),
        "idle_pod_seconds_per_day": pytest.approx(144.0 * 300),
    }


def test_cli_csv_and_errors(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_runs(data_dir, periodic("p", 4, every_s=100, duration_s=10))
    assert main(["idle", "--data", str(data_dir), "--by", "service", "--format", "csv"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split(",")[:3] == ["group", "arrivals", "arrivals_per_day"]
    assert lines[1].startswith("agents,4,")
    assert main(["idle", "--data", str(data_dir), "--by", "pod"]) == 2
    assert main(["idle", "--data", str(data_dir / "missing")]) == 2
    assert main(["idle", "--data", str(data_dir), "--cold-start", "soon"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "no dataset at" in err and "bad duration 'soon'" in err


def test_report_gains_the_idle_sections(data_dir: Path, tmp_path: Path) -> None:
    write_runs(data_dir, periodic("p", 10, every_s=600, duration_s=60) + [Run("solo", 0, 5)])
    sections = report_sections(open_dataset(data_dir))
    assert [title for title, _ in sections] == [
        "Idle time by agent (busiest first)",
        "Idle-gap survival",
        "Cooldown trade-off",
        "Warm-pool size (replay)",
    ]
    table = sections[0][1]
    assert "<td>p</td><td>10</td><td>540</td>" in table and "<td>solo</td><td>1</td><td>-</td>" in table
    survival = sections[1][1]
    assert [trace.name for trace in survival.data] == ["p"]  # a single run has no gap to draw
    assert list(survival.data[0].y[:8]) == [1.0] * 7 + [0.0]
    assert [list(t.y) for t in sections[3][1].data] == [[1.0, 0.0]]
    # analyze report picks the sections up by name
    out = tmp_path / "report.html"
    assert main(["report", "--data", str(data_dir), "--out", str(out)]) == 0
    page = out.read_text()
    assert "<h2>Idle-gap survival</h2>" in page and "<h2>Warm-pool size (replay)</h2>" in page


def test_report_section_without_agent_runs(data_dir: Path) -> None:
    write_runs(data_dir, [Run("p", 0, 5, name="chat", category="llm")])
    assert report_sections(open_dataset(data_dir)) == [("Idle time by agent", "<p>No agent runs in this dataset.</p>")]


def brute_force_scale_up_gaps(intervals: list[tuple[int, int]]) -> list[float]:
    """Integer-second intervals: walk the level second by second and time every fall below k and rise back."""
    horizon = max((end for _, end in intervals), default=0) + 1
    level = [sum(1 for start, end in intervals if start <= t < end) for t in range(horizon)]
    gaps: list[float] = []
    for k in range(2, max(level, default=0) + 1):
        dropped = None
        for t in range(1, horizon):
            if level[t - 1] >= k > level[t]:
                dropped = t
            elif level[t - 1] < k <= level[t] and dropped is not None:
                gaps.append(float(t - dropped))
                dropped = None
    return sorted(gaps)


def test_scale_up_gaps_hand_worked() -> None:
    second = 1_000_000_000
    # A [0, 60), B [10, 20), C [40, 50): level 2 falls at 20 and returns at 40; D [100, 130), E [100, 130),
    # F [110, 120): level 2 returns at 100 (50 s after C ended), level 3 first reached at 110 (no gap yet)
    runs = [(0, 60), (10, 20), (40, 50), (100, 130), (100, 130), (110, 120)]
    starts = sorted(s * second for s, _ in runs)
    ends = sorted(e * second for _, e in runs)
    assert scale_up_gaps(starts, ends) == [20.0, 50.0]
    assert scale_up_gaps([0, 5 * second], [5 * second, 9 * second]) == []  # back to back: never two at once


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 40), st.integers(1, 15)), max_size=25))
def test_scale_up_gaps_equal_brute_force(runs: list[tuple[int, int]]) -> None:
    intervals = [(start, start + length) for start, length in runs]
    second = 1_000_000_000
    starts = sorted(s * second for s, _ in intervals)
    ends = sorted(e * second for _, e in intervals)
    assert sorted(scale_up_gaps(starts, ends)) == brute_force_scale_up_gaps(intervals)


def test_scale_up_gaps_from_the_dataset(data_dir: Path) -> None:
    pairs = [
        Run("pairs", p * 600 + offset, length) for p in range(10) for offset, length in ((0, 60), (10, 10), (40, 10))
    ]
    write_runs(data_dir, pairs)
    (g,) = analyze_idle(open_dataset(data_dir), with_scale_up_gaps=True)
    assert sorted(g.scale_up_gaps) == [20.0] * 10 + [560.0] * 9
    (without,) = analyze_idle(open_dataset(data_dir))
    assert without.scale_up_gaps is None


# The time at each concurrency level as a window query over the events (sql/idle_summary.sql before
# analyzer/idle.py computed it): install_idle_levels is held to it, row for row and type for type.
WINDOW_LEVELS_SQL = """
WITH events AS (
    SELECT grp, t, sum(delta) AS delta
    FROM (
        SELECT grp, start_ns AS t, 1 AS delta FROM idle_runs
        UNION ALL
        SELECT grp, end_ns AS t, -1 AS delta FROM idle_runs
    )
    GROUP BY grp, t
),
levels AS (
    SELECT grp, t,
           sum(delta) OVER (PARTITION BY grp ORDER BY t) AS level,
           lead(t) OVER (PARTITION BY grp ORDER BY t) - t AS duration_ns
    FROM events
)
SELECT grp, level, sum(duration_ns) AS level_ns
FROM levels
WHERE duration_ns > 0
GROUP BY grp, level
ORDER BY grp, level
"""


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["a", "b", "c"]), st.integers(0, 40), st.integers(0, 15)),  # zero-length runs too
        max_size=40,
    )
)
def test_idle_levels_equal_the_window_query(runs: list[tuple[str, int, int]]) -> None:
    con = duckdb.connect()
    con.execute("CREATE TEMP TABLE idle_runs (grp VARCHAR, start_ns BIGINT, end_ns BIGINT)")
    if runs:  # seconds as ns: many instants where runs start and end together
        con.executemany("INSERT INTO idle_runs VALUES (?, ?, ?)", [(g, s * 10**9, (s + n) * 10**9) for g, s, n in runs])
    install_idle_levels(con)
    kept = con.execute("SELECT grp, level, level_ns FROM idle_levels ORDER BY grp, level")
    kept_types, kept_rows = [d[:2] for d in kept.description], kept.fetchall()
    window = con.execute(WINDOW_LEVELS_SQL)
    assert kept_types == [d[:2] for d in window.description]
    assert kept_rows == window.fetchall()
