"""Real datasets of agent runs for the idle-curve tests, notebook and benchmark (DatasetFiles + schema.SPANS).

Arrival sequences: periodic, Poisson with a fixed seed, bursty with long gaps. Times are seconds from BASE.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa

from collector_ext.schema import SPANS
from collector_ext.storage.dataset_files import DatasetFiles

BASE = datetime(2026, 11, 2, tzinfo=UTC)
BASE_NS = int(BASE.timestamp()) * 1_000_000_000


@dataclass(frozen=True)
class Run:
    agent: str
    start_s: float
    duration_s: float
    service: str = "agents"
    namespace: str = "team-a"
    name: str = "agent.loop"
    category: str | None = "agent"
    pod: str | None = None


def periodic(agent: str, count: int, every_s: float, duration_s: float, **kw: str) -> list[Run]:
    return [Run(agent, i * every_s, duration_s, **kw) for i in range(count)]


def poisson(agent: str, count: int, mean_gap_s: float, duration_s: float, seed: int, **kw: str) -> list[Run]:
    rng = random.Random(seed)
    t, runs = 0.0, []
    for _ in range(count):
        runs.append(Run(agent, round(t, 3), duration_s, **kw))
        t += rng.expovariate(1 / mean_gap_s)
    return runs


def bursty(agent: str, bursts: int, per_burst: int, inner_gap_s: float, pause_s: float, duration_s: float) -> list[Run]:
    """`bursts` bursts of `per_burst` arrivals `inner_gap_s` apart, bursts `pause_s` apart (start to start)."""
    return [Run(agent, b * pause_s + i * inner_gap_s, duration_s) for b in range(bursts) for i in range(per_burst)]


def startup(agent: str, start_s: float, duration_s: float) -> Run:
    """A `sandbox.startup` span: the measured start-up time of one sandbox."""
    return Run(agent, start_s, duration_s, name="sandbox.startup", category="other")


def runs_table(runs: Iterable[Run]) -> pa.Table:
    runs = list(runs)
    n = len(runs)
    starts = [BASE_NS + round(r.start_s * 1e9) for r in runs]
    columns = {
        "trace_id": [i.to_bytes(16, "big") for i in range(1, n + 1)],
        "span_id": [i.to_bytes(8, "big") for i in range(1, n + 1)],
        "name": [r.name for r in runs],
        "start_time": starts,
        "end_time": [s + round(r.duration_s * 1e9) for s, r in zip(starts, runs, strict=True)],
        "service_name": [r.service for r in runs],
        "k8s_namespace": [r.namespace for r in runs],
        "k8s_pod": [r.pod for r in runs],
        "category": [r.category for r in runs],
        "agent_name": [r.agent for r in runs],
    }
    arrays = [pa.array(columns[f.name], f.type) if f.name in columns else pa.nulls(n, f.type) for f in SPANS]
    return pa.Table.from_arrays(arrays, schema=SPANS)


def write_runs(data_dir: Path, runs: Iterable[Run], writer_id: str = "idle-test") -> Path:
    DatasetFiles(data_dir, writer_id).write("spans", runs_table(runs))
    return data_dir
