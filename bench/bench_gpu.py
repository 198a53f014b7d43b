"""`analyze gpu --by agent` over a month of DCGM samples and millions of spans, against the bare DuckDB join.

Full: 200 slices, 30 days of 1-minute GR_ENGINE_ACTIVE samples (8.6 M rows; every 5th slice has none and
uses its spans), 5 M inference spans (quick: 20 slices, 3 days, 200 k spans). `BENCH_GPU_SLICES`,
`BENCH_GPU_DAYS`, `BENCH_GPU_SPANS` override the sizes. Each command runs in its own fresh process (its peak
RSS is its own), alternating with the bare join, `repeats` times; medians and the ratio to the bare join.

The bare join is the floor of the work: samples joined to their allocation (DRA device, time inside the
interval) and to the spans on that pod starting in the sample's minute, busy time summed per agent. It
does none of what makes the answer right (interval de-duplication and merging, shared devices, sample
intervals, de-duplicated replays, span-busy fallback, shares by overlap, prices).

    python -m bench --only gpu --quick
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

from analyzer.gpu_synthetic import synthetic_gpu
from bench.side_by_side import analyze_command, compare, python_command

_BARE = """
import sys, duckdb
root = sys.argv[1]
con = duckdb.connect()
rows = con.execute(
    '''
    WITH busy AS (
        SELECT a.pod, m.time, m.value
        FROM read_parquet($metrics) AS m
        JOIN read_parquet($allocations) AS a
          ON m.dra_device_name = a.device AND m.time BETWEEN a.first_seen AND a.last_seen
        WHERE m.metric = 'DCGM_FI_PROF_GR_ENGINE_ACTIVE'
    )
    SELECT s.agent_name, sum(b.value * 60) / 3600 AS busy_slice_hours
    FROM busy AS b
    JOIN read_parquet($spans) AS s ON s.k8s_pod = b.pod AND date_trunc('minute', s.start_time) = b.time
    GROUP BY s.agent_name
    ''',
    {
        "metrics": root + "/gpu_metrics/date=*/*.parquet",
        "allocations": root + "/gpu_allocations/date=*/*.parquet",
        "spans": root + "/spans/date=*/*.parquet",
    },
).fetchall()
assert rows
"""


def main(quick: bool) -> dict:
    slices = int(os.environ.get("BENCH_GPU_SLICES", 20 if quick else 200))
    days = int(os.environ.get("BENCH_GPU_DAYS", 3 if quick else 30))
    spans = int(os.environ.get("BENCH_GPU_SPANS", 200_000 if quick else 5_000_000))
    repeats = 2 if quick else 3
    with tempfile.TemporaryDirectory(prefix="bench-gpu-") as tmp:
        root = Path(tmp) / "data"
        started = time.perf_counter()
        summary = synthetic_gpu(root, slices=slices, days=days, spans=spans, seed=11)
        generate_s = time.perf_counter() - started
        commands = {
            "bare_duckdb_join": python_command(_BARE, str(root)),
            "analyze_gpu_by_agent": analyze_command("gpu", "--data", str(root), "--by", "agent"),
            "analyze_gpu_by_slice": analyze_command("gpu", "--data", str(root), "--by", "slice"),
        }
        print(
            f"gpu benchmark: {slices} slices x {days} days, {summary.samples:,} samples, {summary.spans:,} spans, "
            f"median of {repeats} (process start included)"
        )
        timings = compare(commands, "bare_duckdb_join", repeats)
    return {
        "slices": slices,
        "days": days,
        "samples": summary.samples,
        "spans": summary.spans,
        "allocation_rows": summary.allocations,
        "repeats": repeats,
        "generate_s": round(generate_s, 2),
        **timings,
    }


if __name__ == "__main__":
    main(quick="--quick" in sys.argv)
