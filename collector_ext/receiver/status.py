"""The ONE map from an error's kind to its gRPC status code, HTTP status and retryability, and the
`google.rpc.Status` both transports answer with.

Follows the OTLP specification (protocol/otlp.md, "Failures" and "OTLP/HTTP Throttling"): bad data is
permanent (gRPC INVALID_ARGUMENT, HTTP 400, with `google.rpc.BadRequest` details naming what is wrong); a
request past the size limit is RESOURCE_EXHAUSTED without RetryInfo / 413 (the same bytes never fit);
everything transient is gRPC UNAVAILABLE, which OTLP clients always retry, with `RetryInfo` in the status
details (and, for the Python exporter, in the `google.rpc.retryinfo-bin` trailer), and HTTP 503 or 429 with
`Retry-After`. A retryable kind is never RESOURCE_EXHAUSTED: an OTLP client drops that unless RetryInfo
is attached, and an intermediary may strip details. OTLP/HTTP failure bodies are a `google.rpc.Status` in
the request's content type.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

from collector_ext.errors import ErrorKind, ReceiverError


@dataclass(frozen=True)
class Answer:
    grpc_code: grpc.StatusCode
    http_status: int
    retryable: bool  # answered with RetryInfo (gRPC) and Retry-After (HTTP)


STATUS: dict[ErrorKind, Answer] = {
    ErrorKind.MALFORMED: Answer(grpc.StatusCode.INVALID_ARGUMENT, 400, False),
    ErrorKind.TOO_LARGE: Answer(grpc.StatusCode.RESOURCE_EXHAUSTED, 413, False),
    # HTTP-only kinds; gRPC has no content types and the body comes whole, but each still has a code
    ErrorKind.UNSUPPORTED_MEDIA: Answer(grpc.StatusCode.INVALID_ARGUMENT, 415, False),
    ErrorKind.BODY_TIMEOUT: Answer(grpc.StatusCode.DEADLINE_EXCEEDED, 408, False),
    ErrorKind.OVERLOADED: Answer(grpc.StatusCode.UNAVAILABLE, 503, True),
    ErrorKind.BUSY: Answer(grpc.StatusCode.UNAVAILABLE, 429, True),
    ErrorKind.DISK_FULL: Answer(grpc.StatusCode.UNAVAILABLE, 503, True),
    ErrorKind.STORAGE_UNAVAILABLE: Answer(grpc.StatusCode.UNAVAILABLE, 503, True),
    ErrorKind.UNAUTHENTICATED: Answer(grpc.StatusCode.UNAUTHENTICATED, 401, False),
    ErrorKind.INTERNAL: Answer(grpc.StatusCode.INTERNAL, 500, False),
}


def answer(err: ReceiverError) -> Answer:
    return STATUS[err.kind]


def retry_delay_s(err: ReceiverError, default_s: float) -> float:
    return err.retry_after_s if err.retry_after_s else default_s


def retry_after_header(err: ReceiverError, default_s: float) -> str:
    """HTTP `Retry-After`: whole seconds, rounded up, at least 1."""
    return str(max(1, math.ceil(retry_delay_s(err, default_s))))


def retry_info(err: ReceiverError, default_s: float) -> error_details_pb2.RetryInfo:
    seconds = retry_delay_s(err, default_s)
    delay = duration_pb2.Duration(seconds=int(seconds), nanos=int(round((seconds % 1) * 1e9)))
    return error_details_pb2.RetryInfo(retry_delay=delay)


def rpc_status(err: ReceiverError, default_retry_s: float) -> status_pb2.Status:
    """The google.rpc.Status of an error: RetryInfo when retryable, BadRequest when it names violations."""
    code = answer(err).grpc_code
    status = status_pb2.Status(code=getattr(code_pb2, code.name), message=err.message)
    if answer(err).retryable:
        packed = any_pb2.Any()
        packed.Pack(retry_info(err, default_retry_s))
        status.details.append(packed)
    if err.violations:
        bad = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=field, description=description)
                for field, description in err.violations
            ]
        )
        packed = any_pb2.Any()
        packed.Pack(bad)
        status.details.append(packed)
    return status
