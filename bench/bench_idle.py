"""`analyze idle` and `analyze recommend` over many agent runs, against a bare DuckDB window query.

Full: 1 M agent runs from 500 agents over 7 days (quick: 100 k runs); `BENCH_IDLE_RUNS` / `BENCH_IDLE_AGENTS`
override the sizes. Each command runs in its own fresh process (its peak RSS is its own), alternating with
the bare query, `repeats` times; the table shows medians and the ratio to the bare query. The bare query
computes the same idle gaps (latest end of the earlier runs per agent) and their p50/p90/p99, nothing else:
the floor any implementation pays to read the runs and sort them per agent.

    python -m bench --only idle --quick
"""

from __future__ import annotations

import os
import random
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa

from bench.side_by_side import analyze_command, compare, python_command
from collector_ext.schema import SPANS
from collector_ext.storage.dataset_files import DatasetFiles

BASE_NS = 1_793_577_600 * 1_000_000_000  # 2026-11-02T00:00Z
DAYS = 7

_BARE = """
import sys, duckdb
pattern = sys.argv[1] + "/spans/date=*/*.parquet"
con = duckdb.connect()
rows = con.execute(
    '''
    SELECT agent_name, count(*) AS gaps, quantile_cont(gap_s, [0.5, 0.9, 0.99]) AS q
    FROM (
        SELECT agent_name,
               greatest(epoch_ns(start_time) - max(epoch_ns(end_time)) OVER (
                   PARTITION BY agent_name ORDER BY start_time, end_time
                   ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) / 1e9 AS gap_s
        FROM read_parquet(?, hive_partitioning = true)
        WHERE category = 'agent'
    )
    WHERE gap_s IS NOT NULL
    GROUP BY agent_name
    ''',
    [pattern],
).fetchall()
assert rows
"""


def generate(root: Path, runs: int, agents: int, seed: int = 1) -> str:
    """Bursty agent runs: each agent alternates bursts (short gaps) and long idle pauses. Returns the busiest agent."""
    rng = random.Random(seed)
    per_agent = runs // agents
    span = DAYS * 86_400.0
    names, starts, ends = [], [], []
    for a in range(agents):
        name = f"agent-{a:04d}"
        mean_gap = span / per_agent
        t = rng.uniform(0, mean_gap)
        for _ in range(per_agent):
            start_ns = BASE_NS + int(t * 1e9)
            names.append(name)
            starts.append(start_ns)
            ends.append(start_ns + int(rng.uniform(2, 90) * 1e9))
            # 80 % of arrivals come in bursts, 20 % after a long pause: the mean gap stays ~ span/per_agent
            t += rng.expovariate(1 / (mean_gap * 0.2)) if rng.random() < 0.8 else rng.expovariate(1 / (mean_gap * 4.2))
    n = len(names)
    columns = {
        "trace_id": pa.array([i.to_bytes(16, "big") for i in range(1, n + 1)], pa.binary(16)),
        "span_id": pa.array([i.to_bytes(8, "big") for i in range(1, n + 1)], pa.binary(8)),
        "name": pa.array(["agent.loop"] * n),
        "start_time": pa.array(starts, pa.timestamp("ns", tz="UTC")),
        "end_time": pa.array(ends, pa.timestamp("ns", tz="UTC")),
        "service_name": pa.array([f"svc-{int(x[6:]) % 40}" for x in names]),
        "k8s_namespace": pa.array([f"team-{int(x[6:]) % 8}" for x in names]),
        "category": pa.array(["agent"] * n),
        "agent_name": pa.array(names),
    }
    table = pa.Table.from_arrays(
        [columns[f.name] if f.name in columns else pa.nulls(n, f.type) for f in SPANS], schema=SPANS
    )
    DatasetFiles(root, "bench").write("spans", table)
    return "agent-0000"


def main(quick: bool) -> dict:
    runs = int(os.environ.get("BENCH_IDLE_RUNS", 100_000 if quick else 1_000_000))
    agents = int(os.environ.get("BENCH_IDLE_AGENTS", 500))
    repeats = 2 if quick else 3
    with tempfile.TemporaryDirectory(prefix="bench-idle-") as tmp:
        root = Path(tmp) / "data"
        started = time.perf_counter()
        agent = generate(root, runs, agents)
        generate_s = time.perf_counter() - started
        commands = {
            "bare_duckdb_gaps": python_command(_BARE, str(root)),
            "analyze_idle": analyze_command("idle", "--data", str(root), "--format", "json"),
            "analyze_recommend": analyze_command("recommend", "--data", str(root), "--agent", agent),
        }
        print(f"idle benchmark: {runs:,} agent runs, {agents} agents, median of {repeats} (process start included)")
        timings = compare(commands, "bare_duckdb_gaps", repeats)
    return {"runs": runs, "agents": agents, "repeats": repeats, "generate_s": round(generate_s, 2), **timings}


if __name__ == "__main__":
    main(quick="--quick" in sys.argv)
