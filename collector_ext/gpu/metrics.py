"""DCGM GPU metrics from OTLP metric exports -> `gpu_metrics` rows, durable before acknowledgement.

NVIDIA dcgm-exporter metrics reach us through the Collector's Prometheus receiver as OTLP gauges (and
sums), with the exporter's labels as data point attributes (`gpu`, `UUID`, `GPU_I_ID`, `GPU_I_PROFILE`,
`Hostname`, `pod`, `namespace`, `container`, the `dra_*` labels) and the scrape target as resource
attributes. Only the metrics named in `config.gpu_metric_names` are kept; the rest are dropped (counted).

Durability: the kept part of a request is appended to a write-ahead log (`<wal>/metrics`) before
`export` returns. Rows are buffered and written as Parquet in batches (`parquet_max_rows` /
`parquet_max_seconds`); after a batch is written the WAL is rotated and the segments it covered retired.
On start the WAL is replayed. A crash between a Parquet write and the retirement replays samples that are
already written: the analyzer reads samples DISTINCT on (time, metric, GPU identity).
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter

import pyarrow as pa
import structlog
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.metrics.v1.metrics_pb2 import DataPointFlags, ResourceMetrics, ScopeMetrics

from collector_ext.config import MIB, ReceiverConfig
from collector_ext.decode.otlp_values import attributes_to_dict
from collector_ext.schema import GPU_METRICS
from collector_ext.storage.dataset_files import DatasetFiles
from collector_ext.storage.wal import WriteAheadLog

log = structlog.get_logger("agentmeter.gpu_metrics")

TABLE = "gpu_metrics"
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


class GpuMetricsReceiver:
    """Accepts OTLP metric exports, keeps the DCGM metrics, writes them to `gpu_metrics` in batches."""

    def __init__(self, config: ReceiverConfig, files: DatasetFiles) -> None:
        self.config = config
        self.files = files
        self.names = metric_names(config.gpu_metric_names)
        self.dropped_points = 0
        self.rows_written = 0
        self._rows: list[dict] = []
        self._last_seq = 0  # WAL segment of the newest buffered row
        self._oldest_row_at: float | None = None
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()  # one Parquet write + retirement at a time
        self._closed = threading.Event()
        self.wal = WriteAheadLog(
            config.wal_path / "metrics", segment_bytes=config.wal_segment_mib * MIB, fsync=config.fsync
        )
        self._replay()
        self._flusher = threading.Thread(target=self._flush_loop, name="gpu-metrics-flusher", daemon=True)
        self._flusher.start()

    def _replay(self) -> None:
        replayed = 0
        for seq, payload in self.wal.replay():
            request = ExportMetricsServiceRequest.FromString(payload)
            rows = decode_metrics(request, self.names).rows
            self._rows.extend(rows)
            self._last_seq = max(self._last_seq, seq)
            replayed += len(rows)
        if replayed:
            log.info("replayed GPU metric samples from the write-ahead log", samples=replayed)
            self.flush()
        elif self._last_seq:
            self.wal.retire_through(self._last_seq)  # segments holding no configured metric any more

    def export(self, request: ExportMetricsServiceRequest) -> tuple[int, str]:
        """Keep the configured metrics durably; returns (rejected data points, message naming the reasons)."""
        decoded = decode_metrics(request, self.names)
        if decoded.rows:
            payload = decoded.kept.SerializeToString()
            with self._lock:
                seq = self.wal.append(payload)
                self._rows.extend(decoded.rows)
                self._last_seq = max(self._last_seq, seq)
                if self._oldest_row_at is None:
                    self._oldest_row_at = time.monotonic()
                full = len(self._rows) >= self.config.parquet_max_rows
            if full:
                self.flush()
        with self._lock:
            self.dropped_points += decoded.dropped
        message = "; ".join(f"{reason} ({n})" for reason, n in sorted(decoded.reasons.items()))
        return decoded.rejected, message

    def flush(self) -> int:
        """Write the buffered rows as one Parquet batch, then retire the WAL segments they came from."""
        with self._write_lock:
            with self._lock:
                rows, through = self._rows, self._last_seq
                self._rows, self._oldest_row_at = [], None
                if rows:
                    self.wal.rotate()  # later appends go to a new segment, which stays
            if not rows:
                return 0
            try:
                self.files.write(TABLE, pa.Table.from_pylist(rows, schema=GPU_METRICS))
            except BaseException:
                with self._lock:  # keep them for the next attempt (they are still in the WAL too)
                    self._rows = rows + self._rows
                    self._oldest_row_at = self._oldest_row_at or time.monotonic()
                raise
            self.wal.retire_through(through)
            self.rows_written += len(rows)
            return len(rows)

    def _flush_loop(self) -> None:
        tick = min(1.0, self.config.parquet_max_seconds)
        while not self._closed.wait(tick):
            with self._lock:
                due = (
                    self._oldest_row_at is not None
                    and time.monotonic() - self._oldest_row_at >= self.config.parquet_max_seconds
                )
            if due:
                try:
                    self.flush()
                except OSError as err:  # disk trouble: the rows stay in the WAL; retried at the next tick
                    log.error("writing GPU metrics failed; will retry", error=str(err))

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        self._flusher.join(timeout=5)
        self.flush()
        self.wal.close()
