"""Stitching and task resolution: what stitching costs at ingest, what `analyze tasks` costs over a big dataset.

(1) ingest, in-process: the same deep-and-wide multi-agent workload (chains of 4 sub-agent traces and
    fan-outs to 8, every trace an agent run with LLM and tool calls and delegate spans, spans arriving
    children first in requests of 16) through TraceBuffer -> Stitcher.finish_trace (+ LiveState), with
    stitching on and switched off (`Stitcher(enabled=False)`: keep rule only), alternating, `repeats` times.
(2) `analyze tasks --format csv` in a fresh process over a generated dataset of 1 M traces with 300 k links
    (quick: 100 k / 30 k; `BENCH_TASKS_TRACES` / `BENCH_TASKS_LINKS` override), against a bare DuckDB
    recursive query over the same links (the floor: follow the link edges to each trace's top, nothing
    else), and our task resolution alone (trace_tasks: roots, top-level agent runs, link choice, cycles;
    no listing), alternating. Medians, ratios and each process's peak RSS (VmHWM). `analyze tasks` does
    much more than the floor: attribution of every span, agent runs and depths, exactly-once usage,
    prices, and it writes one CSV line per task (700 k at full size), streamed from DuckDB.
    BENCH_TASKS_DIR keeps/reuses the generated dataset there (default: a temporary directory);
    BENCH_TASKS_BASELINE names another checkout (e.g. a `git worktree` of an older commit) whose
    `analyze tasks` runs too, alternating with ours: a before/after in one run.
(3) resolution of hostile link graphs (issue 16): a chain of 10,000 traces each linked to the previous, a
    2,000-trace cycle, a 2,000-deep chain, a fan-out of 100,000 sub-agents under one trace, and 100 k random
    links among 200 k traces. Per case, in one process over the same chosen parent links, the four ways of
    following them to the tops of bench/task_resolvers.py side by side (the recursive CTEs of before, pointer
    jumping in DuckDB SQL, a Python walk, pointer jumping in NumPy: the analyzer's), alternating, medians and
    ratios to the CTE; a resolver past `BENCH_TASKS_CAP_S` (default 300, quick 30) is stopped and shown as
    "> cap". Then `analyze tasks` end to end per case, ours and (with BENCH_TASKS_BASELINE) the baseline's.

    BENCH_TASKS_PARTS=ingest,analyze,resolution picks the parts (default: all).

    python -m bench --only tasks --quick
"""

from __future__ import annotations

import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa

from collector_ext.schema import SPANS
from collector_ext.storage.dataset_files import DatasetFiles
from collector_ext.traces.live_state import LiveState
from collector_ext.traces.span_refs import span_refs
from collector_ext.traces.stitching import Stitcher
from collector_ext.traces.trace_buffer import TraceBuffer

BASE_NS = 1_795_000_000_000_000_000
_PEAK = "print([l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0], file=sys.stderr)"
_ANALYZE = (
    """
import contextlib, io, sys
from analyzer.cli import main
with contextlib.redirect_stdout(io.StringIO()) as out:
    code = main(sys.argv[1:])
print(out.getvalue().count(chr(10)) - 1, file=sys.stderr)
"""
    + _PEAK
    + """
sys.exit(code)
"""
)
# Task resolution alone (what the bare query does, by our rules: trace_tasks), no listing.
_RESOLVE = (
    """
import sys
from analyzer.dataset import open_dataset
from analyzer.tasks import install_trace_tasks
con = open_dataset(__import__("pathlib").Path(sys.argv[1])).con
install_trace_tasks(con)
print(con.execute("SELECT count(DISTINCT task_id) FROM trace_tasks").fetchone()[0], file=sys.stderr)
"""
    + _PEAK
)
_BARE = (
    """
import sys, duckdb
pattern = sys.argv[1] + "/spans/date=*/*.parquet"
con = duckdb.connect()
tasks = con.execute('''
    WITH RECURSIVE spans AS (SELECT * FROM read_parquet(?, hive_partitioning = true)),
    edges AS (
        SELECT DISTINCT trace_id, link.trace_id AS parent_id
        FROM (SELECT trace_id, unnest(links) AS link FROM spans WHERE parent_span_id IS NULL)
    ),
    traces AS (SELECT DISTINCT trace_id FROM spans),
    descend(trace_id, task_id, depth) AS (
        SELECT trace_id, trace_id, 0 FROM traces WHERE trace_id NOT IN (SELECT trace_id FROM edges)
        UNION ALL
        SELECT e.trace_id, d.task_id, d.depth + 1
        FROM descend AS d JOIN edges AS e ON e.parent_id = d.trace_id
        WHERE d.depth < 10000
    )
    SELECT count(DISTINCT task_id) FROM descend
''', [pattern]).fetchone()[0]
print(tasks, file=sys.stderr)
"""
    + _PEAK
)


# ------------------------------------------------------------------------------------------------ ingest


def _row(trace: int, k: int, parent: int | None, category: str, name: str, **extra) -> dict:
    row = dict.fromkeys(SPANS.names)
    row.update(
        trace_id=trace.to_bytes(16, "big"),
        span_id=(trace * 64 + k).to_bytes(8, "big"),
        parent_span_id=(trace * 64 + parent).to_bytes(8, "big") if parent is not None else None,
        name=name,
        category=category,
        start_time=BASE_NS + trace * 1_000_000 + k,
        end_time=BASE_NS + trace * 1_000_000 + 1000 + k,
        service_name="agents",
        links=[],
        attributes={},
        resource_attributes={},
        **extra,
    )
    return row


def _trace(trace: int, agent: str, link: tuple[int, int] | None, delegates: int) -> list[dict]:
    """An agent run with 3 LLM calls, a tool call and `delegates` delegate spans, in the order they end."""
    spans = []
    for k in range(1, 4):
        spans.append(_row(trace, k, 0, "llm", "chat", input_tokens=100 * k, output_tokens=10 * k))
    spans.append(_row(trace, 4, 0, "tool", "mcp.tool.search"))
    spans.extend(_row(trace, 5 + d, 0, "other", "delegate") for d in range(delegates))
    root = _row(trace, 0, None, "agent", "agent.loop", agent_name=agent)
    if link is not None:
        root["links"] = [
            {"trace_id": link[0].to_bytes(16, "big"), "span_id": link[1].to_bytes(8, "big"), "attributes": {}}
        ]
    spans.append(root)
    return spans


def ingest_workload(tasks: int) -> list[list[dict]]:
    """Requests of 16 spans: half the tasks a chain of 4 traces, half a fan-out to 8 sub-agent traces."""
    spans: list[dict] = []
    trace = 1
    for task in range(tasks):
        top = trace
        if task % 2 == 0:  # deep
            spans += _trace(top, "orchestrator", None, 1)
            for depth in range(1, 4):
                trace += 1
                spans += _trace(trace, f"level{depth}", (trace - 1, (trace - 1) * 64 + 5), 1)
        else:  # wide
            spans += _trace(top, "lead", None, 8)
            for i in range(8):
                trace += 1
                spans += _trace(trace, f"worker{i}", (top, top * 64 + 5 + i), 0)
        trace += 1
    return [spans[i : i + 16] for i in range(0, len(spans), 16)]


def ingest_once(rows: list[list[dict]], stitching: bool) -> tuple[float, int, int]:
    # the receiver's span refs of each request, fresh each run (finish_trace fills them in place)
    requests = [span_refs(pa.Table.from_pylist(request, schema=SPANS)) for request in rows]
    buffer = TraceBuffer(grace_seconds=0.0, max_wait_seconds=900.0, max_spans=1_000_000)
    stitcher = Stitcher(enabled=stitching)
    live = LiveState()
    written = spans = 0
    started = time.perf_counter()
    for i, request in enumerate(requests):
        live.spans_seen(request)
        buffer.add(request, now=float(i))
        spans += len(request)
        for ready in buffer.take_ready(now=float(i) + 0.5):
            written += len(stitcher.finish_trace(ready.spans, ready.state))
            live.trace_finished(ready.trace_id)
    for ready in buffer.drain():
        written += len(stitcher.finish_trace(ready.spans, ready.state))
    return time.perf_counter() - started, spans, written


# ------------------------------------------------------------------------------------------------ analyze


def generate_dataset(root: Path, traces: int, links: int, seed: int = 3) -> None:
    """`traces` traces of 2 spans (an agent run and an LLM call); `links` of them link to an earlier trace's
    root, so tasks form random trees (chains and fans). Written as Parquet files of 200 k spans."""
    write_linked_traces(root, random_parents(traces, links, seed))


def random_parents(traces: int, links: int, seed: int = 3) -> list[int | None]:
    """`links` traces linked to a recent earlier trace (realistic depths), the others tops."""
    rng = random.Random(seed)
    linked = set(rng.sample(range(1, traces), links))
    return [rng.randrange(max(0, t - 5000), t) if t in linked else None for t in range(traces)]


def write_linked_traces(root: Path, parents: list[int | None]) -> None:
    """Trace t (id t) is an agent run and an LLM call; its agent run links to trace parents[t]'s agent run."""
    files = DatasetFiles(root, "bench")
    chunk = 100_000
    for first in range(0, len(parents), chunk):
        ids = range(first, min(first + chunk, len(parents)))
        trace_ids, span_ids, parent_ids, names, categories, agents, starts, ends = [], [], [], [], [], [], [], []
        inputs, outputs, link_lists = [], [], []
        for t in ids:
            tid = t.to_bytes(16, "big")
            link = None
            parent = parents[t]
            if parent is not None:
                link = [
                    {
                        "trace_id": parent.to_bytes(16, "big"),
                        "span_id": (parent * 2).to_bytes(8, "big"),
                        "attributes": {},
                    }
                ]
            start = BASE_NS + t * 1_000_000
            for k in range(2):
                trace_ids.append(tid)
                span_ids.append((t * 2 + k).to_bytes(8, "big"))
                parent_ids.append(None if k == 0 else (t * 2).to_bytes(8, "big"))
                names.append("agent.loop" if k == 0 else "chat")
                categories.append("agent" if k == 0 else "llm")
                agents.append(f"agent{t % 50}")
                starts.append(start + k)
                ends.append(start + 900_000 - k)
                inputs.append(None if k == 0 else 100 + t % 7)
                outputs.append(None if k == 0 else 10)
                link_lists.append(link if k == 0 else [])
        n = len(trace_ids)
        columns = {
            "trace_id": pa.array(trace_ids, pa.binary(16)),
            "span_id": pa.array(span_ids, pa.binary(8)),
            "parent_span_id": pa.array(parent_ids, pa.binary(8)),
            "name": names,
            "category": categories,
            "agent_name": agents,
            "service_name": ["agents"] * n,
            "start_time": pa.array(starts, pa.timestamp("ns", tz="UTC")),
            "end_time": pa.array(ends, pa.timestamp("ns", tz="UTC")),
            "input_tokens": pa.array(inputs, pa.int64()),
            "output_tokens": pa.array(outputs, pa.int64()),
            "usage_counted": [k is not None for k in inputs],
            "links": pa.array(link_lists, SPANS.field("links").type),
        }
        table = pa.table({f.name: columns.get(f.name, pa.nulls(n, f.type)) for f in SPANS}, schema=SPANS)
        files.write("spans", table)


def _timed(args: list[str], cwd: Path | None = None, timeout_s: float = 1800) -> tuple[float, int, str]:
    started = time.perf_counter()
    done = subprocess.run(args, capture_output=True, text=True, timeout=timeout_s, check=False, cwd=cwd)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{args[:4]} failed: {done.stderr[-2000:]}")
    lines = done.stderr.strip().splitlines()
    return seconds, int(lines[-1]) // 1024, lines[-2]


def resolution_cases() -> dict[str, list[int | None]]:
    """Parent trace of every trace (by index), per case."""
    return {
        "chain_10000": [None, *range(9_999)],
        "cycle_2000": [(t + 1) % 2_000 for t in range(2_000)],
        "depth_2000": [None, *range(1_999)],
        "fan_out_100000": [None] + [0] * 100_000,
        "links_100k": random_parents(200_000, 100_000),
    }


def resolution_figures(root: Path, repeats: int, cap_s: float, baseline: str | None) -> dict:
    """Part (3): every resolver per case, in process, alternating; then `analyze tasks` end to end."""
    import threading

    import duckdb

    from analyzer.dataset import load_sql, open_dataset
    from bench.task_resolvers import RESOLVERS

    figures: dict = {}
    for case, parents in resolution_cases().items():
        data = root / f"resolution-{case}"
        marker = data / ".generated"
        if not marker.exists():
            shutil.rmtree(data, ignore_errors=True)
            write_linked_traces(data, parents)
            marker.write_text("")
        con = open_dataset(data).con
        con.execute("SET enable_progress_bar = false")
        for name in ("tasks_attribution.sql", "tasks_resolve.sql"):  # the chosen parent links: common to all
            con.execute(load_sql(name))
        seconds: dict[str, list[float]] = {name: [] for name in RESOLVERS}
        answers: dict[str, tuple] = {}
        capped: set[str] = set()
        for _ in range(repeats):
            for name, resolve in RESOLVERS.items():
                if name in capped:
                    continue
                timer = threading.Timer(cap_s, con.interrupt)  # only DuckDB statements can be stopped
                timer.start()
                started = time.perf_counter()
                try:
                    answers[name] = resolve(con)
                    seconds[name].append(time.perf_counter() - started)
                except duckdb.InterruptException:  # past the cap: shown as such, not run again
                    capped.add(name)
                finally:
                    timer.cancel()
        con.close()
        cte = statistics.median(seconds["cte"]) if seconds["cte"] else None
        row: dict = {"traces": len(parents), "links": sum(p is not None for p in parents)}
        for name in RESOLVERS:
            if name in capped:
                row[f"{name}_s"] = f"> {cap_s:.0f}"
                continue
            median = statistics.median(seconds[name])
            row[f"{name}_s"] = round(median, 4)
            if cte is not None and name != "cte":
                row[f"{name}_vs_cte"] = round(median / cte, 3)
        row["answers_agree"] = len(set(answers.values())) == 1
        row["answer_tasks_depth_cycle"] = next(iter(answers.values()), None)
        analyze = [sys.executable, "-c", _ANALYZE, "tasks", "--data", str(data), "--format", "csv"]
        runs: dict[str, list[float]] = {"ours": [], "baseline": []}
        for _ in range(repeats):
            for side, cwd in (("baseline", baseline), ("ours", None)):
                if side == "baseline" and (not baseline or runs.get("baseline_capped")):
                    continue
                try:
                    runs[side].append(_timed(analyze, cwd=Path(cwd) if cwd else None, timeout_s=cap_s)[0])
                except subprocess.TimeoutExpired:
                    runs[f"{side}_capped"] = [cap_s]
        row["analyze_tasks_s"] = round(statistics.median(runs["ours"]), 3)
        if baseline:
            if runs.get("baseline_capped"):
                row["baseline_analyze_tasks_s"] = f"> {cap_s:.0f}"
                row["baseline_vs_ours"] = f"> {cap_s / row['analyze_tasks_s']:.0f}"
            else:
                row["baseline_analyze_tasks_s"] = round(statistics.median(runs["baseline"]), 3)
                row["baseline_vs_ours"] = round(row["baseline_analyze_tasks_s"] / row["analyze_tasks_s"], 1)
        figures[case] = row
        print(case, row, flush=True)
    return figures


def ingest_figures(repeats: int, ingest_tasks: int) -> dict:
    """Part (1): stitching on and off at ingest, alternating."""
    requests = ingest_workload(ingest_tasks)
    timings: dict[bool, list[float]] = {True: [], False: []}
    spans = written = 0
    for _ in range(repeats):
        for stitching in (True, False):
            seconds, spans, written = ingest_once(requests, stitching)
            timings[stitching].append(seconds)
    on, off = statistics.median(timings[True]), statistics.median(timings[False])
    return {
        "ingest_spans": spans,
        "ingest_spans_written": written,
        "ingest_with_stitching_s": round(on, 4),
        "ingest_without_stitching_s": round(off, 4),
        "ingest_with_stitching_spans_per_s": round(spans / on),
        "ingest_without_stitching_spans_per_s": round(spans / off),
        "ingest_stitching_cost_ratio": round(on / off, 2),
    }


def analyze_figures(root: Path, repeats: int, traces: int, links: int, baseline: str | None) -> dict:
    """Part (2): `analyze tasks` against the bare recursive query and our resolution alone."""
    figures: dict = {}
    marker = root / f".generated-{traces}-{links}"
    if not marker.exists():  # a kept directory of other sizes (or half written) is generated afresh
        shutil.rmtree(root, ignore_errors=True)
        started = time.perf_counter()
        generate_dataset(root, traces, links)
        marker.write_text("")
        figures["dataset_generate_s"] = round(time.perf_counter() - started, 1)
    analyze = [sys.executable, "-c", _ANALYZE, "tasks", "--data", str(root), "--format", "csv"]
    bare = [sys.executable, "-c", _BARE, str(root)]
    resolve = [sys.executable, "-c", _RESOLVE, str(root)]
    runs: dict[str, list[tuple[float, int, str]]] = {"analyze": [], "bare": [], "resolve": [], "baseline": []}
    for _ in range(repeats):
        if baseline:
            runs["baseline"].append(_timed(analyze, cwd=Path(baseline)))
        runs["analyze"].append(_timed(analyze))
        runs["bare"].append(_timed(bare))
        runs["resolve"].append(_timed(resolve))
    analyze_s = statistics.median(r[0] for r in runs["analyze"])
    bare_s = statistics.median(r[0] for r in runs["bare"])
    resolve_s = statistics.median(r[0] for r in runs["resolve"])
    figures.update(
        traces=traces,
        links=links,
        tasks_found_analyze=int(runs["analyze"][0][2]),
        tasks_found_bare=int(runs["bare"][0][2]),
        analyze_tasks_s=round(analyze_s, 3),
        bare_recursive_query_s=round(bare_s, 3),
        tasks_found_resolve=int(runs["resolve"][0][2]),
        resolve_only_s=round(resolve_s, 3),
        analyze_vs_bare_ratio=round(analyze_s / bare_s, 2),
        resolve_vs_bare_ratio=round(resolve_s / bare_s, 2),
        analyze_peak_rss_mib=max(r[1] for r in runs["analyze"]),
        bare_peak_rss_mib=max(r[1] for r in runs["bare"]),
        resolve_peak_rss_mib=max(r[1] for r in runs["resolve"]),
    )
    if baseline:
        baseline_s = statistics.median(r[0] for r in runs["baseline"])
        figures.update(
            baseline_analyze_tasks_s=round(baseline_s, 3),
            baseline_vs_bare_ratio=round(baseline_s / bare_s, 2),
            baseline_peak_rss_mib=max(r[1] for r in runs["baseline"]),
            baseline_tasks_found=int(runs["baseline"][0][2]),
        )
    return figures


def main(quick: bool) -> dict:
    from rich.console import Console
    from rich.table import Table

    repeats = int(os.environ.get("BENCH_TASKS_ROUNDS", 3))
    ingest_tasks = int(os.environ.get("BENCH_TASKS_INGEST", 300 if quick else 2000))
    traces = int(os.environ.get("BENCH_TASKS_TRACES", 100_000 if quick else 1_000_000))
    links = int(os.environ.get("BENCH_TASKS_LINKS", 30_000 if quick else 300_000))
    cap_s = float(os.environ.get("BENCH_TASKS_CAP_S", 30 if quick else 300))
    parts = set((os.environ.get("BENCH_TASKS_PARTS") or "ingest,analyze,resolution").split(","))
    keep = os.environ.get("BENCH_TASKS_DIR")
    baseline = os.environ.get("BENCH_TASKS_BASELINE")

    figures: dict = {}
    if "ingest" in parts:
        figures.update(ingest_figures(repeats, ingest_tasks))
    with tempfile.TemporaryDirectory(prefix="bench-tasks-") as tmp:
        root = Path(keep) if keep else Path(tmp)
        if "analyze" in parts:
            figures.update(analyze_figures(root / "data", repeats, traces, links, baseline))
        if "resolution" in parts:
            figures["resolution"] = resolution_figures(root, repeats, cap_s, baseline)

    table = Table(title=f"stitching and tasks ({'quick' if quick else 'full'}; medians of {repeats}, alternating)")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for key, value in figures.items():
        if key == "resolution":
            continue
        table.add_row(key, f"{value:,}" if isinstance(value, int) else str(value))
    if table.row_count:
        Console().print(table)
    if "resolution" in figures:
        cases = figures["resolution"]
        resolution = Table(title="following links to the tops (seconds, medians; ratio to the recursive CTE)")
        keys = list(dict.fromkeys(key for row in cases.values() for key in row))
        resolution.add_column("case")
        for key in keys:
            resolution.add_column(key, justify="right")
        for case, row in cases.items():
            resolution.add_row(case, *(str(row.get(key, "")) for key in keys))
        Console(width=400).print(resolution)
    return figures
