"""The receiver's own observability: Prometheus metrics (served at `GET /metrics`) and structured logs.

The metrics live in a registry owned by one `Telemetry` object (not prometheus_client's global one), so
tests and several receivers in one process never collide. Parts of the receiver update them directly:

- the transports (grpc_server, http_server): `requests`, `spans_received`, `spans_rejected` (by the typed
  reason decode gives each rejected span), `export_latency`, `request_memory` (read at scrape time)
- the pipelines' own figures (`Pipeline.snapshot()`, `GpuMetricsReceiver.snapshot()`: rows written and
  dropped, WAL bytes, traces and spans held, failed writes, refusals, ...) are read at scrape time through
  `watch_pipeline` / `watch_gpu_metrics`, so the hot path pays nothing for them. The figures of the shared
  durable batch writer (storage/batch_writer.py) carry a `pipeline` label: `spans` or `gpu_metrics`.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from collector_ext.gpu.metrics import GpuMetricsSnapshot
    from collector_ext.traces.pipeline import PipelineSnapshot

# Export latency buckets (seconds): an fsync'd 1000-span request takes a few to tens of milliseconds.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Telemetry:
    """Metrics of one receiver and its logger."""

    def __init__(self, log_level: str = "info", log_format: str = "json") -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.spans_received = Counter(
            "agentmeter_spans_received", "Spans received in export requests (accepted + rejected).", registry=r
        )
        self.spans_rejected = Counter(
            "agentmeter_spans_rejected", "Spans rejected one by one (partial_success).", ["reason"], registry=r
        )
        self.requests = Counter(
            "agentmeter_requests",
            "Export requests by transport, signal and outcome (ok, partial, invalid, too_large, ...).",
            ["transport", "signal", "outcome"],
            registry=r,
        )
        self.export_latency = Histogram(
            "agentmeter_export_latency_seconds",
            "Time from a request's arrival to its acknowledgement (decode + WAL).",
            ["transport", "signal"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.request_memory = Gauge(
            "agentmeter_request_memory_bytes",
            "Request bodies held now (received and inflated), of --max-request-memory-mib.",
            registry=r,
        )
        self.log = configure_logging(log_level, log_format)
        self._pipelines = _PipelineCollector()
        self.registry.register(self._pipelines)

    def watch_pipeline(self, snapshot: Callable[[], PipelineSnapshot]) -> None:
        """Expose the span pipeline's figures (read from `snapshot()` at each scrape)."""
        self._pipelines.pipeline = snapshot

    def watch_gpu_metrics(self, snapshot: Callable[[], GpuMetricsSnapshot]) -> None:
        """Expose the GPU metrics pipeline's figures (read from `snapshot()` at each scrape)."""
        self._pipelines.gpu_metrics = snapshot

    def render(self) -> tuple[bytes, str]:
        """The Prometheus text exposition of all metrics, and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


# PipelineStats field -> (metric name, help, counter?)
PIPELINE_METRICS = {
    "spans_dropped": ("agentmeter_spans_dropped", "Spans not written because of the keep rule.", True),
    "spans_replayed": ("agentmeter_spans_replayed", "Spans recovered from the write-ahead log at start.", True),
    "spans_duplicate_skipped": (
        "agentmeter_spans_duplicates_skipped",
        "Spans not written again: written recently, sent again (a client's retry after a lost answer).",
        True,
    ),
    "traces_written": ("agentmeter_traces_written", "Traces stitched and written.", True),
    "traces_early": ("agentmeter_traces_early", "Traces written before complete (limits, shutdown).", True),
    "traces_wal_pressure": (
        "agentmeter_traces_wal_pressure",
        "Traces written early because they held the oldest segments of a write-ahead log near its limit.",
        True,
    ),
    "stitch_failures": ("agentmeter_stitch_failures", "Traces written unstitched because stitching failed.", True),
}
# WriterSnapshot field -> (metric name, help, counter?); every one labelled with the pipeline (spans, gpu_metrics)
WRITER_METRICS = {
    "wal_bytes": ("agentmeter_wal_bytes", "Bytes in write-ahead log segments on disk.", False),
    "wal_segments": ("agentmeter_wal_segments", "Write-ahead log segments on disk.", False),
    "rows_buffered": ("agentmeter_rows_buffered", "Rows waiting for the next Parquet file.", False),
    "parquet_files": ("agentmeter_parquet_files", "Parquet files written.", True),
    "parquet_write_failures": (
        "agentmeter_parquet_write_failures",
        "Parquet writes that failed (the rows stay held and are retried).",
        True,
    ),
    "wal_append_failures": (
        "agentmeter_wal_append_failures",
        "Requests refused because the write-ahead log could not be written (disk full, no file descriptors, I/O).",
        True,
    ),
    "wal_corrupt_records": (
        "agentmeter_wal_corrupt_records",
        "Damaged write-ahead log records skipped at replay (the records after them were replayed).",
        True,
    ),
}


class _PipelineCollector(Collector):
    """Every pipeline's figures in one family per metric name (the pipelines are label values)."""

    def __init__(self) -> None:
        self.pipeline: Callable[[], PipelineSnapshot] | None = None
        self.gpu_metrics: Callable[[], GpuMetricsSnapshot] | None = None

    def collect(self):
        pipeline = self.pipeline() if self.pipeline is not None else None
        gpu = self.gpu_metrics() if self.gpu_metrics is not None else None
        writers = [snapshot.writer for snapshot in (pipeline, gpu) if snapshot is not None]
        if pipeline is not None:
            stats = pipeline.stats
            for key, (name, help_text, _) in PIPELINE_METRICS.items():
                yield _family(name, help_text, True, getattr(stats, key))
            yield _family(
                "agentmeter_spans_written", "Span rows written to Parquet.", True, pipeline.writer.rows_written
            )
            yield _family(
                "agentmeter_traces_held",
                "Traces held in memory awaiting their root and quiet.",
                False,
                pipeline.traces_held,
            )
            yield _family(
                "agentmeter_spans_held", "Spans held in memory awaiting their trace.", False, pipeline.spans_held
            )
            yield _family(
                "agentmeter_parquet_quarantined_files",
                "Damaged Parquet files of this writer moved to <data-dir>/_quarantine.",
                True,
                pipeline.quarantined_files,
            )
        if gpu is not None:
            yield _family(
                "agentmeter_gpu_samples_written",
                "GPU metric samples written to Parquet.",
                True,
                gpu.writer.rows_written,
            )
            yield _family(
                "agentmeter_gpu_points_dropped",
                "Metric data points dropped (metrics not configured).",
                True,
                gpu.points_dropped,
            )
        if not writers:
            return
        for key, (name, help_text, is_counter) in WRITER_METRICS.items():
            family = _labelled(name, help_text, is_counter, ["pipeline"])
            for writer in writers:
                family.add_metric([writer.pipeline], float(getattr(writer, key)))
            yield family
        refusals = _labelled(
            "agentmeter_backpressure_refusals",
            "Requests refused with a retryable answer: the write-ahead log past --max-pending-mib (pending) or "
            "free disk below --min-free-disk-mib (disk).",
            True,
            ["pipeline", "reason"],
        )
        for writer in writers:
            refusals.add_metric([writer.pipeline, "pending"], float(writer.refusals_pending))
            refusals.add_metric([writer.pipeline, "disk"], float(writer.refusals_disk))
        yield refusals

    def describe(self):
        return []


def _labelled(name: str, help_text: str, is_counter: bool, labels: list[str]):
    if is_counter:
        return CounterMetricFamily(name, help_text, labels=labels)
    return GaugeMetricFamily(name, help_text, labels=labels)


def _family(name: str, help_text: str, is_counter: bool, value: float):
    family = CounterMetricFamily(name, help_text) if is_counter else GaugeMetricFamily(name, help_text)
    family.add_metric([], float(value))
    return family


def configure_logging(level: str = "info", fmt: str = "json") -> Any:
    """structlog to stderr: one JSON object per line (or console rendering for people)."""
    renderer = structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer(colors=False)
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level.upper()]),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    return structlog.get_logger("collector_ext")
