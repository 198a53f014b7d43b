"""GPU slice use: allocated, busy and idle slice-hours, their cost, and the GPU time of agents and tasks.

The rules (DESIGN.md "GPU slices"), computed in SQL (`analyzer/sql/gpu_views.sql`):

- A **slice** is one device: a DRA device (node/driver/pool/device) or a device-plugin device id. Its
  allocated time is the union of the poller's intervals per holding pod (re-written open intervals count
  once: max(last_seen)); a device shared by n pods at once gives each 1/n of that time.
- **Busy** time comes from `DCGM_FI_PROF_GR_ENGINE_ACTIVE` (fraction x sample interval, works on MIG);
  `DCGM_FI_DEV_GPU_UTIL` (%) only for a whole GPU without it; with no metrics at all, the union of the
  pod's inference (LLM, embedding) span intervals. Samples are read DISTINCT on (time, metric, GPU identity)
  so a WAL replay never counts twice. Metrics join slices the way dcgm-exporter labels its rows
  (sql/gpu_views.sql step 5): a whole GPU by its DRA claim's device or its device-plugin UUID, a MIG slice by
  its MIG row (through the parent GPU and profile for DRA, the pod for device plugins); a GPU row is never
  credited to several slices, and only while the slice is held.
- **Attribution**: each piece of busy time is shared by the inference spans on the holding pod that
  overlap it, in proportion to their overlap; busy time no span covers stays unattributed. Allocated (and
  idle) time follows the busy shares within each holder segment, so every grouping sums to the same totals.
- **Cost** = slice-hours x price per slice-hour of the slice's MIG profile or device class
  (`gpu_prices.example.yaml` documents the defaults and the lookup).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from analyzer.dataset import AnalyzerError, load_sql, read_yaml_file
from analyzer.tasks import install_task_views

GROUPINGS = ("slice", "node", "namespace", "pod", "agent", "task")
MAX_SAMPLE_SECONDS = 120.0  # a sample never stands for more than this (a scrape gap is not busy time)
JOIN_BUCKET_SECONDS = 60.0  # sizes the span x busy-piece join buckets (any value gives the same answer)
MIG_SLICES = 7  # compute slices of a MIG-capable GPU (A100, H100, H200)

# The built-in prices: the same figures as analyzer/gpu_prices.example.yaml (a test holds them equal).
DEFAULT_GPU_USD_PER_HOUR = 4.00
DEFAULT_PROFILE_PRICES: dict[str, float] = {
    "1g.5gb": 0.40, "2g.10gb": 0.80, "3g.20gb": 1.20, "4g.20gb": 1.60, "7g.40gb": 2.80,
    "1g.10gb": 0.57, "1g.20gb": 0.86, "2g.20gb": 1.14, "3g.40gb": 1.71, "4g.40gb": 2.29, "7g.80gb": 4.00,
    "1g.12gb": 0.63, "1g.24gb": 0.94, "2g.24gb": 1.26, "3g.47gb": 1.89, "4g.47gb": 2.51, "7g.94gb": 4.40,
    "1g.18gb": 0.71, "1g.35gb": 1.07, "2g.35gb": 1.43, "3g.71gb": 2.14, "4g.71gb": 2.86, "7g.141gb": 5.00,
}  # fmt: skip

REPORT_COLUMNS = (
    "profile",
    "slices",
    "allocated_slice_hours",
    "busy_slice_hours",
    "utilization",
    "idle_slice_hours",
    "allocated_cost_usd",
    "busy_cost_usd",
    "idle_cost_usd",
    "activity_source",
)


class GpuPrices:
    """Price per slice-hour by MIG profile; `<N>g.*` profiles not listed cost N/7 of a whole GPU."""

    def __init__(self, gpu_usd_per_hour: float = DEFAULT_GPU_USD_PER_HOUR, profiles: Mapping | None = None):
        self.gpu_usd_per_hour = gpu_usd_per_hour
        self.profiles = dict(DEFAULT_PROFILE_PRICES if profiles is None else profiles)

    def per_hour(self, profile: str | None) -> float:
        if profile in self.profiles:
            return self.profiles[profile]
        head = (profile or "").split(".", 1)[0]
        if head.endswith("g") and head[:-1].isdigit() and 1 <= int(head[:-1]) <= MIG_SLICES:
            return self.gpu_usd_per_hour * int(head[:-1]) / MIG_SLICES
        return self.gpu_usd_per_hour

    @classmethod
    def from_mapping(cls, doc: Any, source: str) -> GpuPrices:
        if not isinstance(doc, dict):
            raise AnalyzerError(f"{source}: expected a mapping with gpu_usd_per_hour and profiles")
        unknown = set(doc) - {"gpu_usd_per_hour", "profiles"}
        if unknown:
            raise AnalyzerError(f"{source}: unknown key(s) {', '.join(sorted(map(str, unknown)))}")
        gpu = _price(doc.get("gpu_usd_per_hour", DEFAULT_GPU_USD_PER_HOUR), f"{source}: gpu_usd_per_hour")
        profiles = doc.get("profiles", {}) or {}
        if not isinstance(profiles, dict):
            raise AnalyzerError(f"{source}: profiles must map a MIG profile to a price per hour")
        return cls(gpu, {str(k): _price(v, f"{source}: profiles.{k}") for k, v in profiles.items()})

    @classmethod
    def load(cls, path: Path | None) -> GpuPrices:
        if path is None:
            return cls()
        return cls.from_mapping(read_yaml_file(path, "GPU price file"), str(path))


def _price(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise AnalyzerError(f"{where} must be a number >= 0, got {value!r}")
    return float(value)


def example_prices_file() -> Path:
    return Path(str(resources.files("analyzer").joinpath("gpu_prices.example.yaml")))


def _epoch(value: datetime | None, default: float) -> float:
    return value.timestamp() if value is not None else default


def install_gpu_views(
    con: duckdb.DuckDBPyConnection,
    *,
    prices: GpuPrices | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    spans: bool = False,
    tasks: bool = False,
) -> None:
    """Create (or re-create for another window) the gpu_* tables, the slice prices and the trace->task map.

    `spans` also attributes busy time to the inference spans (gpu_usage then has a row per span that used
    a slice): needed for --by agent / task and span_gpu_costs, and the costly part on big datasets."""
    con.execute(
        "CREATE OR REPLACE TEMP TABLE gpu_params AS "
        "SELECT $since::DOUBLE AS since_s, $until::DOUBLE AS until_s, $max_sample::DOUBLE AS max_sample_s, "
        "$bucket::DOUBLE AS bucket_s",
        {
            "since": _epoch(since, -1e18),
            "until": _epoch(until, 1e18),
            "max_sample": MAX_SAMPLE_SECONDS,
            "bucket": JOIN_BUCKET_SECONDS,
        },
    )
    con.execute(load_sql("gpu_money.sql"))
    con.execute(load_sql("gpu_views.sql"))
    prices = prices or GpuPrices()
    slices = con.execute("SELECT slice_id, profile FROM gpu_slices ORDER BY slice_id").fetchall()
    price_table = pa.table(
        {
            "slice_id": pa.array([s for s, _ in slices], pa.string()),
            "profile": pa.array([p for _, p in slices], pa.string()),
            "usd_per_hour": pa.array([prices.per_hour(p) for _, p in slices], pa.float64()),
        }
    )
    con.register("_gpu_slice_prices_arrow", price_table)
    try:
        con.execute("CREATE OR REPLACE TEMP TABLE gpu_slice_prices AS SELECT * FROM _gpu_slice_prices_arrow")
    finally:
        con.unregister("_gpu_slice_prices_arrow")
    if spans or tasks:
        con.execute(load_sql("gpu_attribution.sql"))
    _install_trace_tasks(con, tasks)


def _install_trace_tasks(con: duckdb.DuckDBPyConnection, tasks: bool) -> None:
    """trace -> task: the analyzer's authoritative resolution when asked for, else nothing to resolve."""
    if not tasks:
        sql = "SELECT NULL::BLOB AS trace_id, NULL::BLOB AS task_id WHERE false"
    else:
        install_task_views(con)
        sql = "SELECT trace_id, task_id FROM trace_tasks"
    con.execute(f"CREATE OR REPLACE TEMP VIEW gpu_trace_tasks AS {sql}")


def install_gpu_costs(con: duckdb.DuckDBPyConnection, gpu_prices_file: Path | None = None) -> None:
    """View span_gpu_costs(trace_id, span_id, gpu_cost_usd): each inference span's share of busy GPU time."""
    install_gpu_views(con, prices=GpuPrices.load(gpu_prices_file), spans=True)
    con.execute(load_sql("gpu_span_costs.sql"))


def gpu_report(
    con: duckdb.DuckDBPyConnection,
    by: str = "slice",
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    gpu_prices_file: Path | None = None,
) -> list[dict[str, Any]]:
    """One row per group (named by `by`): slice-hours, utilization, cost, idle cost, activity source."""
    if by not in GROUPINGS:
        raise AnalyzerError(f"unknown grouping {by!r}: use one of {', '.join(GROUPINGS)}")
    if since is not None and until is not None and until <= since:
        raise AnalyzerError("--until must be after --since")
    install_gpu_views(
        con,
        prices=GpuPrices.load(gpu_prices_file),
        since=since,
        until=until,
        spans=by in ("agent", "task"),
        tasks=by == "task",
    )
    cursor = con.execute(load_sql("gpu_report.sql"), {"by": by})
    names = [d[0] for d in cursor.description]
    rows = []
    for values in cursor.fetchall():
        row = dict(zip(names, values, strict=True))
        rows.append({by: row.pop("grp"), **row})
    return rows


def gpu_timeline(con: duckdb.DuckDBPyConnection, step_seconds: float = 3600.0) -> list[dict[str, Any]]:
    """Per-slice utilization per time step (after install_gpu_views)."""
    cursor = con.execute(load_sql("gpu_timeline.sql"), {"step_s": float(step_seconds)})
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, values, strict=True)) for values in cursor.fetchall()]
