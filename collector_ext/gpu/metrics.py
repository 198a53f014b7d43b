"""DCGM GPU metrics from OTLP metric exports -> `gpu_metrics` rows, durable before acknowledgement.

NVIDIA dcgm-exporter metrics reach us through the Collector's Prometheus receiver as OTLP gauges (and
sums), with the exporter's labels as data point attributes (`gpu`, `UUID`, `GPU_I_ID`, `GPU_I_PROFILE`,
`Hostname`, `pod`, `namespace`, `container`, the `dra_*` labels) and the scrape target as resource
attributes. Only the metrics named in `config.gpu_metric_names` are kept; the rest are dropped (counted).

Durability is the shared durable batch writer's (storage/batch_writer.py), the same as the spans': the kept
part of a request is appended to a write-ahead log (`<wal>/metrics`) before `export` returns, or `export`
raises the retryable ReceiverError (back-pressure past `--max-pending-mib`, a full disk, a WAL that cannot
be written). Samples are written as Parquet in batches (`parquet_max_rows` / `parquet_max_seconds`); the
WAL segments they came from are then retired. On start the WAL is replayed, skipping samples already in
this writer's files (a crash between a Parquet write and the retirement), keyed like the analyzer's
DISTINCT on (time, metric, GPU identity).
"""

from __future__ import annotations

import math
import threading
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import structlog
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.metrics.v1.metrics_pb2 import DataPointFlags, ResourceMetrics, ScopeMetrics

from collector_ext.config import MIB, ReceiverConfig
from collector_ext.decode.otlp_values import attributes_to_dict
from collector_ext.schema import GPU_METRICS
from collector_ext.storage.batch_writer import DurableBatchWriter, Part, WriterLimits, WriterSnapshot
from collector_ext.storage.dataset_files import DatasetFiles
from collector_ext.storage.wal import WriteAheadLog

log = structlog.get_logger("agentmeter.gpu_metrics")

TABLE = "gpu_metrics"
PIPELINE = "gpu_metrics"
# What makes a sample one sample: analyzer/sql/gpu_views.sql reads them DISTINCT ON (series, time) with the
# series hashed from these label columns; replays are de-duplicated on the same key.
SAMPLE_KEY = (
    "time",
    "metric",
    "uuid",
    "gpu_i_id",
    "gpu",
    "hostname",
    "pod",
    "namespace",
    "container",
    "dra_claim_name",
    "dra_claim_namespace",
    "dra_device_name",
)
NO_RECORDED_VALUE = DataPointFlags.DATA_POINT_FLAGS_NO_RECORDED_VALUE_MASK

# Column <- label names, first present wins: dcgm-exporter's own labels (`uuid`, `pod_name`, `pod_namespace`,
# `container_name` with its --use-old-namespace: internal/pkg/collector/gpu_collector.go,
# internal/pkg/transformation/const.go; `Hostname` before its commit d5e5f51, `hostname` from it), then the
# Prometheus receiver's `exported_*` renames, then Kubernetes resource attributes set by k8sattributes.
# `dra_mig_device_uuid` stays in `labels` (the analyzer's DCGM join reads it there).
LABEL_COLUMNS: dict[str, tuple[str, ...]] = {
    "gpu": ("gpu",),
    "uuid": ("UUID", "uuid"),
    "gpu_i_id": ("GPU_I_ID",),
    "gpu_i_profile": ("GPU_I_PROFILE",),
    "hostname": ("Hostname", "hostname", "k8s.node.name"),
    "pod": ("pod", "pod_name", "exported_pod", "k8s.pod.name"),
    "namespace": ("namespace", "pod_namespace", "exported_namespace", "k8s.namespace.name"),
    "container": ("container", "container_name", "exported_container", "k8s.container.name"),
    "dra_claim_name": ("dra_claim_name",),
    "dra_claim_namespace": ("dra_claim_namespace",),
    "dra_driver_name": ("dra_driver_name",),
    "dra_pool_name": ("dra_pool_name",),
    "dra_device_name": ("dra_device_name",),
    "dra_mig_profile": ("dra_mig_profile",),
}
_CONSUMED = frozenset(name for names in LABEL_COLUMNS.values() for name in names)


class MetricsDecodeResult:
    def __init__(self) -> None:
        self.rows: list[dict] = []
        self.kept = ExportMetricsServiceRequest()  # only the kept metrics: what goes to the WAL
        self.rejected = 0
        self.reasons: Counter[str] = Counter()
        self.dropped = 0  # data points of metrics not configured


def metric_names(configured: list[str]) -> dict[str, str]:
    """lower-case name -> configured name: names match case-insensitively (the OTel SDKs lower-case
    instrument names; the Prometheus receiver keeps dcgm-exporter's upper case); rows use the configured one."""
    return {name.lower(): name for name in configured}


def decode_metrics(request: ExportMetricsServiceRequest, names: dict[str, str]) -> MetricsDecodeResult:
    """Rows of the configured gauge/sum metrics; rejections named; other metrics dropped."""
    result = MetricsDecodeResult()
    for resource_metrics in request.resource_metrics:
        resource_labels = _string_labels(resource_metrics.resource.attributes)
        kept_resource: ResourceMetrics | None = None
        for scope_metrics in resource_metrics.scope_metrics:
            kept_scope: ScopeMetrics | None = None
            for metric in scope_metrics.metrics:
                kind = metric.WhichOneof("data")
                name = names.get(metric.name.lower())
                if name is None:
                    result.dropped += _point_count(metric, kind)
                    continue
                if kind not in ("gauge", "sum"):
                    count = _point_count(metric, kind)
                    result.rejected += count
                    result.reasons[f"{name} is a {kind} (only gauge and sum are read)"] += count
                    continue
                accepted = 0
                for point in getattr(metric, kind).data_points:
                    if point.flags & NO_RECORDED_VALUE:
                        continue  # a Prometheus staleness marker: no sample
                    reason = _point_problem(point)
                    if reason:
                        result.rejected += 1
                        result.reasons[f"{name}: {reason}"] += 1
                        continue
                    result.rows.append(_row(name, point, resource_labels))
                    accepted += 1
                if accepted:
                    if kept_resource is None:
                        kept_resource = result.kept.resource_metrics.add()
                        kept_resource.resource.CopyFrom(resource_metrics.resource)
                    if kept_scope is None:
                        kept_scope = kept_resource.scope_metrics.add()
                        kept_scope.scope.CopyFrom(scope_metrics.scope)
                    kept_scope.metrics.append(metric)
    return result


def _point_count(metric, kind: str | None) -> int:
    return len(getattr(metric, kind).data_points) if kind else 0


def _point_problem(point) -> str | None:
    if point.time_unix_nano == 0:
        return "data point without a timestamp"
    which = point.WhichOneof("value")
    if which is None:
        return "data point without a value"
    if which == "as_double" and not math.isfinite(point.as_double):
        return "data point value is not finite"
    return None


def _string_labels(kvs) -> dict[str, str]:
    return {k: v if isinstance(v, str) else str(v) for k, v in attributes_to_dict(kvs).items() if v is not None}


def _row(name: str, point, resource_labels: dict[str, str]) -> dict:
    labels = {**resource_labels, **_string_labels(point.attributes)}  # data point labels win
    row: dict = {
        "time": point.time_unix_nano,
        "metric": name,
        "value": point.as_double if point.WhichOneof("value") == "as_double" else float(point.as_int),
    }
    for column, candidates in LABEL_COLUMNS.items():
        row[column] = next((labels[c] for c in candidates if labels.get(c)), None)
    row["labels"] = {k: v for k, v in _string_labels(point.attributes).items() if k not in _CONSUMED}
    return row


class Sample(NamedTuple):
    """One staged `gpu_metrics` row and the WAL segment of the request it came in."""

    seq: int
    row: dict


def _to_part(samples: list[Sample]) -> Part:
    table = pa.Table.from_pylist([sample.row for sample in samples], schema=GPU_METRICS)
    return Part(table, np.fromiter((sample.seq for sample in samples), dtype=np.int64, count=len(samples)))


@dataclass
class GpuMetricsSnapshot:
    points_dropped: int  # data points of metrics not configured
    writer: WriterSnapshot


class GpuMetricsReceiver:
    """Accepts OTLP metric exports, keeps the DCGM metrics, writes them to `gpu_metrics` in batches through the
    shared durable batch writer (storage/batch_writer.py: WAL, back-pressure, Parquet, retirement, replay)."""

    def __init__(self, config: ReceiverConfig, files: DatasetFiles) -> None:
        self.config = config
        self.files = files
        self.names = metric_names(config.gpu_metric_names)
        self.dropped_points = 0
        self._lock = threading.Lock()
        self.wal = WriteAheadLog(
            config.wal_path / "metrics",
            segment_bytes=config.wal_segment_mib * MIB,
            fsync=config.fsync,
            segment_header=lambda: self.writer.segment_header(),
        )
        self.writer: DurableBatchWriter[Sample] = DurableBatchWriter(
            pipeline=PIPELINE,
            table=TABLE,
            wal=self.wal,
            files=files,
            to_part=_to_part,
            limits=WriterLimits(
                max_pending_bytes=config.max_pending_mib * MIB,
                min_free_disk_bytes=config.min_free_disk_mib * MIB,
                retry_after_s=config.retry_after_seconds,
            ),
            max_rows=config.parquet_max_rows,
            max_seconds=config.parquet_max_seconds,
            tick_seconds=min(1.0, config.parquet_max_seconds),
        )
        self._replay()
        self.writer.start()

    def _replay(self) -> None:
        replayed: list[Sample] = []
        for seq, payload in self.writer.records():
            try:
                request = ExportMetricsServiceRequest.FromString(payload)
            except DecodeError:  # intact framing around bytes that are no request: never one we acknowledged
                log.error("write-ahead log record is not a metrics export; skipped", segment=seq)
                continue
            replayed.extend(Sample(seq, row) for row in decode_metrics(request, self.names).rows)
        if replayed:
            dates = {_date(sample.row["time"]) for sample in replayed}
            written = self.writer.written_keys(list(SAMPLE_KEY), dates)
            fresh = [sample for sample in replayed if _key(sample.row) not in written]
            for seq, count in Counter(sample.seq for sample in fresh).items():
                self.writer.hold_replayed(seq, count)
            self.writer.stage(fresh)
            log.info(
                "replayed GPU metric samples from the write-ahead log",
                samples=len(fresh),
                already_in_parquet=len(replayed) - len(fresh),
            )
        self.writer.finish_replay()
        if replayed:
            try:
                self.writer.write_due(force=True)
            except Exception:  # retried by the flusher; the WAL keeps them meanwhile
                log.exception("writing replayed GPU metric samples failed; will retry")

    def export(self, request: ExportMetricsServiceRequest) -> tuple[int, str]:
        """Keep the configured metrics durably; returns (rejected data points, message naming the reasons).
        Raises the retryable ReceiverError (back-pressure, a full disk, a WAL that cannot be written)."""
        decoded = decode_metrics(request, self.names)
        if decoded.rows:
            seq = self.writer.append(decoded.kept.SerializeToString(), rows=len(decoded.rows))
            self.writer.stage([Sample(seq, row) for row in decoded.rows])
        with self._lock:
            self.dropped_points += decoded.dropped
        message = "; ".join(f"{reason} ({n})" for reason, n in sorted(decoded.reasons.items()))
        return decoded.rejected, message

    def flush(self) -> int:
        """Write every buffered sample now (one file per date), then retire the WAL segments they came from."""
        return self.writer.write_due(force=True)

    def snapshot(self) -> GpuMetricsSnapshot:
        with self._lock:
            dropped = self.dropped_points
        return GpuMetricsSnapshot(dropped, self.writer.snapshot())

    def close(self) -> bool:
        """Write everything buffered; False when that failed (the WAL keeps it for the next start)."""
        return self.writer.close()


def _key(row: dict) -> tuple:
    return tuple(row[column] for column in SAMPLE_KEY)


def _date(time_ns: int) -> str:
    return datetime.fromtimestamp(time_ns // 1_000_000_000, UTC).date().isoformat()
