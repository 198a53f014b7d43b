"""Transport-free OTLP export: request bytes in, the decoded batch (its rejections) out, or a ReceiverError.

The gRPC and HTTP servers both call these, so both give the same answers; each only adds its own framing
(status details and trailers, HTTP status codes and content types) and its own admission (concurrency,
request memory: admission.py).
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable
from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsPartialSuccess,
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTracePartialSuccess,
    ExportTraceServiceResponse,
)

from collector_ext import errors
from collector_ext.config import MIB, ReceiverConfig
from collector_ext.decode.batch import DecodedBatch, Encoding
from collector_ext.decode.pool import DecodePool
from collector_ext.errors import ErrorKind, ReceiverError, parse_request
from collector_ext.receiver.admission import RequestMemory
from collector_ext.receiver.telemetry import Telemetry

MAX_REASONS_IN_MESSAGE = 20

MetricsExport = Callable[[ExportMetricsServiceRequest], tuple[int, str]]


def partial_message(errors_: list[str]) -> str:
    """The partial_success error message: every reason, up to a bound (a huge batch of bad spans)."""
    shown = errors_[:MAX_REASONS_IN_MESSAGE]
    more = len(errors_) - len(shown)
    return "; ".join(shown) + (f"; ... and {more} more rejected spans" if more > 0 else "")


class TraceIngest:
    """Transport-independent trace export: bytes in, decoded batch out (its rejections) or ReceiverError.

    Shared by the gRPC and HTTP servers so both give the same answers. Decoding runs in the decode pool.
    """

    def __init__(self, pipeline: Any, telemetry: Telemetry, config: ReceiverConfig, decoder: DecodePool) -> None:
        self.pipeline = pipeline
        self.telemetry = telemetry
        self.decoder = decoder
        self.retry_after_s = config.retry_after_seconds
        self.limit_bytes = config.max_recv_msg_mib * MIB
        self.memory = RequestMemory(config.max_request_memory_mib * MIB, config.retry_after_seconds)

    def export(self, payload: bytes, encoding: Encoding = Encoding.PROTOBUF) -> DecodedBatch:
        """Decode (validating every span), make the accepted spans durable. Raises ReceiverError."""
        received_time_ns = time.time_ns()
        t = self.telemetry
        try:
            decoded = self.decoder.decode(payload, received_time_ns, encoding)
        except ReceiverError:
            raise
        except Exception as err:  # a bug in decoding: this request fails, the receiver goes on
            t.log.exception("decoding failed")
            raise errors.from_exception(err) from err
        if decoded.internal_error is not None:
            t.log.error("decoding failed", error=decoded.internal_error)
            raise ReceiverError(ErrorKind.INTERNAL, "internal error while decoding")
        if decoded.malformed is not None:
            raise errors.malformed(decoded.malformed, decoded.malformed_field)
        t.spans_received.inc(decoded.total)
        for rejection in decoded.rejections:
            t.spans_rejected.labels(rejection.reason.value).inc()
        if decoded.table is not None:
            wal_payload = decoded.protobuf if decoded.protobuf is not None else payload
            try:
                self.pipeline.accept(wal_payload, decoded, received_time_ns)
            except Exception as err:
                mapped = errors.from_exception(err)
                if mapped.kind is ErrorKind.INTERNAL:
                    t.log.exception("pipeline accept failed")
                raise mapped from err
        return decoded


def trace_response(decoded: DecodedBatch) -> ExportTraceServiceResponse:
    response = ExportTraceServiceResponse()
    if decoded.rejected:
        response.partial_success.CopyFrom(
            ExportTracePartialSuccess(rejected_spans=decoded.rejected, error_message=partial_message(decoded.errors))
        )
    return response


def bearer_matches(header: str | None, token: str | None) -> bool:
    """`authorization: Bearer <token>` check in constant time (no token configured: always true)."""
    if not token:
        return True
    return header is not None and hmac.compare_digest(header.encode(), f"Bearer {token}".encode())


def token_matches(value: str | None, token: str) -> bool:
    """A bare token (KEDA trigger metadata) compared in constant time."""
    return value is not None and hmac.compare_digest(value.encode(), token.encode())


def export_metrics(
    request: ExportMetricsServiceRequest,
    metrics_export: MetricsExport | None,
) -> tuple[int, str]:
    """Hand a metrics export to the GPU metrics receiver (absent: accepted and dropped).

    Whatever its pipeline raises is translated by kind (errors.from_exception): storage trouble is retryable,
    as for traces."""
    if metrics_export is None:
        return 0, ""
    try:
        return metrics_export(request)
    except Exception as err:
        raise errors.from_exception(err) from err


def parse_metrics(payload: bytes) -> ExportMetricsServiceRequest:
    return parse_request(ExportMetricsServiceRequest, payload)


def metrics_response(rejected: int, message: str) -> ExportMetricsServiceResponse:
    response = ExportMetricsServiceResponse()
    if rejected or message:
        response.partial_success.CopyFrom(
            ExportMetricsPartialSuccess(rejected_data_points=rejected, error_message=message)
        )
    return response
