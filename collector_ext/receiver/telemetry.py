"""The receiver's own observability: Prometheus metrics (served at `GET /metrics`) and structured logs.

The metrics live in a registry owned by one `Telemetry` object (not prometheus_client's global one), so
tests and several receivers in one process never collide. Parts of the receiver update them directly:

- the transports (grpc_server, http_server): `requests`, `spans_received`, `spans_rejected` (by the typed
  reason decode gives each rejected span), `export_latency`, `request_memory` (read at scrape time)
- the pipeline's own counters (`Pipeline.snapshot()`: spans written and dropped, WAL bytes, traces and
  spans held, ...) are read at scrape time through `watch_pipeline`, so the hot path pays nothing for them.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

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

    def watch_pipeline(self, snapshot: Callable[[], dict]) -> None:
        """Expose the pipeline's figures (read from `snapshot()` at each scrape)."""
        self.registry.register(_PipelineCollector(snapshot))

    def render(self) -> tuple[bytes, str]:
        """The Prometheus text exposition of all metrics, and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


# snapshot key -> (metric name, help, counter?)
PIPELINE_METRICS = {
    "spans_written": ("agentmeter_spans_written", "Span rows written to Parquet.", True),
    "spans_dropped": ("agentmeter_spans_dropped", "Spans not written because of the keep rule.", True),
    "spans_replayed": ("agentmeter_spans_replayed", "Spans recovered from the write-ahead log at start.", True),
    "parquet_files": ("agentmeter_parquet_files", "Parquet files written.", True),
    "traces_written": ("agentmeter_traces_written", "Traces stitched and written.", True),
    "traces_early": ("agentmeter_traces_early", "Traces written before complete (limits, shutdown).", True),
    "wal_bytes": ("agentmeter_wal_bytes", "Bytes in write-ahead log segments on disk.", False),
    "wal_segments": ("agentmeter_wal_segments", "Write-ahead log segments on disk.", False),
    "traces_held": ("agentmeter_traces_held", "Traces held in memory awaiting their root and quiet.", False),
    "spans_held": ("agentmeter_spans_held", "Spans held in memory awaiting their trace.", False),
    "rows_buffered": ("agentmeter_rows_buffered", "Stitched rows waiting for the next Parquet file.", False),
}


class _PipelineCollector(Collector):
    def __init__(self, snapshot: Callable[[], dict]) -> None:
        self.snapshot = snapshot

    def collect(self):
        figures = self.snapshot()
        for key, (name, help_text, is_counter) in PIPELINE_METRICS.items():
            if key not in figures:
                continue
            family = CounterMetricFamily(name, help_text) if is_counter else GaugeMetricFamily(name, help_text)
            family.add_metric([], float(figures[key]))
            yield family

    def describe(self):
        return []


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
