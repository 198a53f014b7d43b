"""Transport-free OTLP export: request bytes in, the decoded batch (its rejections) out, or a ReceiverError.

The gRPC and HTTP servers both call these, so both give the same answers; each only adds its own framing
(status details and trailers, HTTP status codes and content types).
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
from collector_ext.config import ReceiverConfig
from collector_ext.decode.batch import DecodedBatch
from collector_ext.decode.pool import DecodePool
from collector_ext.errors import ErrorKind, ReceiverError, parse_request
from collector_ext.receiver.telemetry import Telemetry

MAX_REASONS_IN_MESSAGE = 20


def partial_message(errors_: list[str]) -> str:
    """The partial_success error message: every reason, up to a bound (a huge batch of bad spans)."""
    shown = errors_[:MAX_REASONS_IN_MESSAGE]
    more = len(errors_) - len(shown)
    return "; ".join(shown) + (f"; ... and {more} more rejected spans" if more > 0 else "")


def rejection_reason(message: str) -> str:
    """A low-cardinality label for the rejected-spans metric, from one decode error message."""
    reason = message.split("): ", 1)[-1]
    for key in ("trace_id", "span_id", "parent_span_id", "link", "end_time", "start_time", "token"):
        if key in reason:
            return key
    return "other"


class TraceIngest:
    """Transport-independent trace export: bytes in, decoded batch out (its rejections) or ReceiverError.

    Shared by the gRPC and HTTP servers so both give the same answers. Decoding runs in the decode pool.
    """

    def __init__(self, pipeline: Any, telemetry: Telemetry, config: ReceiverConfig, decoder: DecodePool) -> None:
        self.pipeline = pipeline
        self.telemetry = telemetry
        self.decoder = decoder
        self.retry_after_s = config.retry_after_seconds

    def export(self, payload: bytes) -> DecodedBatch:
        """Decode (validating every span), make the accepted spans durable. Raises ReceiverError."""
        received_time_ns = time.time_ns()
        t = self.telemetry
        try:
            decoded = self.decoder.decode(payload, received_time_ns)
        except ReceiverError:
            raise
        except Exception as err:  # a bug in decoding: this request fails, the receiver goes on
            t.log.exception("decoding failed")
            raise errors.from_exception(err, self.retry_after_s) from err
        if decoded.internal_error is not None:
            t.log.error("decoding failed", error=decoded.internal_error)
            raise ReceiverError(ErrorKind.INTERNAL, "internal error while decoding")
        if decoded.malformed is not None:
            raise errors.malformed(decoded.malformed)
        t.spans_received.inc(decoded.total)
        if decoded.rejected:
            for message in decoded.errors:
                t.spans_rejected.labels(rejection_reason(message)).inc()
        if decoded.table is not None:
            try:
                self.pipeline.accept(payload, decoded, received_time_ns)
            except ReceiverError:
                raise
            except Exception as err:
                mapped = errors.from_exception(err, self.retry_after_s)
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


def export_metrics_bytes(
    payload: bytes,
    metrics_export: Callable[[ExportMetricsServiceRequest], tuple[int, str]] | None,
    retry_after_s: float,
    request: ExportMetricsServiceRequest | None = None,
) -> tuple[int, str]:
    """Parse a metrics export and hand it to the GPU metrics receiver (absent: accepted and dropped)."""
    if request is None:
        request = parse_request(ExportMetricsServiceRequest, payload)
    if metrics_export is None:
        return 0, ""
    try:
        return metrics_export(request)
    except ReceiverError:
        raise
    except Exception as err:
        raise errors.from_exception(err, retry_after_s) from err


def metrics_response(rejected: int, message: str) -> ExportMetricsServiceResponse:
    response = ExportMetricsServiceResponse()
    if rejected or message:
        response.partial_success.CopyFrom(
            ExportMetricsPartialSuccess(rejected_data_points=rejected, error_message=message)
        )
    return response
