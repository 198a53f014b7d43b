"""`analyze task PREFIX` on a big dataset: one task as a tree, in a fresh process, side by side with bare DuckDB.

A synthetic dataset of 100 k tasks (~2.9 M spans, 310 k traces; quick: 10 k tasks; `BENCH_TASK_TASKS`
overrides) from `analyzer.synthetic.generate`. Each round, alternating, in fresh processes:

- `analyze task <16-hex prefix> --format json` (the command a user runs: Python start-up, imports, prefix
  resolution, the task's traces, resolution, prices, the tree);
- bare DuckDB computing the same figure by hand: the task's traces by a recursive walk down the link
  edges from its top trace, then its counted calls and tokens (no attribution, no prices, no tree): the floor;
- with `BENCH_TASK_BASELINE` naming another checkout (e.g. `git archive` of an older commit), its
  `analyze task <full id>` too: a before/after in one run.

Medians of `BENCH_TASK_ROUNDS` (default 5; the baseline runs at most twice: it takes tens of seconds),
ratios against bare, and each process's peak RSS (VmHWM). Every task is checked to give the same LLM
calls and tokens in both. BENCH_TASK_DIR keeps / reuses the generated dataset.

    python -m bench --only task_lookup --quick
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_PEAK = "print([l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0], file=sys.stderr)"
_ANALYZE = (
    """
import contextlib, io, json, sys
from analyzer.cli import main
with contextlib.redirect_stdout(io.StringIO()) as out:
    code = main(sys.argv[1:])
tree = json.loads(out.getvalue())
root = tree["root"]["inclusive"]
print(json.dumps([root["llm_calls"], root["input_tokens"], root["output_tokens"]]), file=sys.stderr)
"""
    + _PEAK
    + "\nsys.exit(code)\n"
)
_BARE = (
    """
import json, sys, duckdb
pattern, task = sys.argv[1] + "/spans/date=*/*.parquet", bytes.fromhex(sys.argv[2])
con = duckdb.connect()
row = con.execute('''
    WITH RECURSIVE spans AS (SELECT * FROM read_parquet(?, hive_partitioning = true)),
    edges AS (
        SELECT DISTINCT trace_id, link.trace_id AS parent_id
        FROM (SELECT trace_id, unnest(links) AS link FROM spans WHERE len(links) > 0)
    ),
    tree(trace_id) AS (
        SELECT ?::BLOB
        UNION
        SELECT e.trace_id FROM edges AS e JOIN tree AS t ON e.parent_id = t.trace_id
    )
    SELECT count(*), sum(input_tokens), sum(output_tokens)
    FROM spans WHERE usage_counted AND trace_id IN (SELECT trace_id FROM tree)
''', [pattern, task]).fetchone()
print(json.dumps([int(v) for v in row]), file=sys.stderr)
"""
    + _PEAK
)
_PICK = """
import sys
from analyzer.analysis import Analysis
from analyzer.task_queries import TaskQuery, list_tasks
rows = list_tasks(Analysis.open(__import__("pathlib").Path(sys.argv[1])), TaskQuery(sort="cost", limit=int(sys.argv[2])))
print(" ".join(r["task_id"] for r in rows))
"""


def _timed(args: list[str], cwd: Path | None = None) -> tuple[float, int, str]:
    started = time.perf_counter()
    done = subprocess.run(args, capture_output=True, text=True, timeout=1800, check=False, cwd=cwd)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{args[:4]} failed: {done.stderr[-2000:]}")
    lines = done.stderr.strip().splitlines()
    return seconds, int(lines[-1]) // 1024, lines[-2]


def main(quick: bool) -> dict:
    from rich.console import Console
    from rich.table import Table

    from analyzer.synthetic import generate

    tasks = int(os.environ.get("BENCH_TASK_TASKS", 10_000 if quick else 100_000))
    rounds = int(os.environ.get("BENCH_TASK_ROUNDS", 3 if quick else 5))
    keep = os.environ.get("BENCH_TASK_DIR")
    baseline = os.environ.get("BENCH_TASK_BASELINE")
    figures: dict = {}
    with tempfile.TemporaryDirectory(prefix="bench-task-") as tmp:
        root = Path(keep) if keep else Path(tmp) / "data"
        marker = root / f".generated-{tasks}"
        if not marker.exists():  # a kept directory of another size (or half written) is generated afresh
            shutil.rmtree(root, ignore_errors=True)
            started = time.perf_counter()
            summary = generate(root, tasks=tasks, seed=1)
            marker.write_text(json.dumps({"spans": summary.spans, "traces": summary.traces}))
            figures["dataset_generate_s"] = round(time.perf_counter() - started, 1)
        figures.update(tasks=tasks, **json.loads(marker.read_text()))
        # the most expensive tasks: deep and wide ones, a different one each round
        picked = subprocess.run(
            [sys.executable, "-c", _PICK, str(root), str(rounds)], capture_output=True, text=True, check=True
        ).stdout.split()
        runs: dict[str, list[tuple[float, int, str]]] = {"analyze": [], "bare": [], "baseline": []}
        for n, task_id in enumerate(picked):
            analyze = [sys.executable, "-c", _ANALYZE, "task", task_id[:16], "--data", str(root), "--format", "json"]
            runs["analyze"].append(_timed(analyze))
            runs["bare"].append(_timed([sys.executable, "-c", _BARE, str(root), task_id]))
            if runs["analyze"][-1][2] != runs["bare"][-1][2]:
                raise RuntimeError(f"task {task_id}: analyze {runs['analyze'][-1][2]} != bare {runs['bare'][-1][2]}")
            if baseline and n < 2:
                full = [sys.executable, "-c", _ANALYZE, "task", task_id, "--data", str(root), "--format", "json"]
                runs["baseline"].append(_timed(full, cwd=Path(baseline)))
    analyze_s = statistics.median(r[0] for r in runs["analyze"])
    bare_s = statistics.median(r[0] for r in runs["bare"])
    figures.update(
        rounds=rounds,
        analyze_task_s=round(analyze_s, 3),
        bare_duckdb_s=round(bare_s, 3),
        analyze_vs_bare_ratio=round(analyze_s / bare_s, 2),
        analyze_peak_rss_mib=max(r[1] for r in runs["analyze"]),
        bare_peak_rss_mib=max(r[1] for r in runs["bare"]),
    )
    if runs["baseline"]:
        baseline_s = statistics.median(r[0] for r in runs["baseline"])
        figures.update(
            baseline_analyze_task_s=round(baseline_s, 3),
            baseline_vs_analyze_ratio=round(baseline_s / analyze_s, 1),
            baseline_peak_rss_mib=max(r[1] for r in runs["baseline"]),
        )
    table = Table(title=f"analyze task at {tasks:,} tasks ({'quick' if quick else 'full'}; medians, alternating)")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for key, value in figures.items():
        table.add_row(key, f"{value:,}" if isinstance(value, int) else str(value))
    Console().print(table)
    return figures
