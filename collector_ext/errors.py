"""The ONE map from the receiver's internal errors to gRPC status codes and HTTP status codes.

Follows the OTLP specification (protocol/otlp.md, "Failures"): bad data is not retryable (gRPC
INVALID_ARGUMENT, HTTP 400); a request past the size limit is RESOURCE_EXHAUSTED / 413; when the
receiver cannot take more (pending bytes or free disk past their limits) it answers UNAVAILABLE / 503 with
a RetryInfo / Retry-After; too many concurrent requests is RESOURCE_EXHAUSTED with RetryInfo / 429;
a missing or wrong bearer token is UNAUTHENTICATED / 401. Everything unexpected is INTERNAL / 500.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TypeVar

import grpc
from google.protobuf.message import DecodeError, Message

M = TypeVar("M", bound=Message)


class ErrorKind(enum.Enum):
    MALFORMED = "invalid"
    TOO_LARGE = "too_large"
    UNSUPPORTED_MEDIA = "unsupported_media"
    OVERLOADED = "overloaded"
    BUSY = "busy"
    DISK_FULL = "disk_full"
    UNAUTHENTICATED = "unauthenticated"
    INTERNAL = "internal"


@dataclass(frozen=True)
class StatusPair:
    grpc_code: grpc.StatusCode
    http_status: int
    retryable: bool  # answered with RetryInfo (gRPC) and Retry-After (HTTP)


STATUS: dict[ErrorKind, StatusPair] = {
    ErrorKind.MALFORMED: StatusPair(grpc.StatusCode.INVALID_ARGUMENT, 400, False),
    ErrorKind.TOO_LARGE: StatusPair(grpc.StatusCode.RESOURCE_EXHAUSTED, 413, False),
    # gRPC has no content types: the HTTP-only 415 maps to INVALID_ARGUMENT should it ever occur there.
    ErrorKind.UNSUPPORTED_MEDIA: StatusPair(grpc.StatusCode.INVALID_ARGUMENT, 415, False),
    ErrorKind.OVERLOADED: StatusPair(grpc.StatusCode.UNAVAILABLE, 503, True),
    ErrorKind.BUSY: StatusPair(grpc.StatusCode.RESOURCE_EXHAUSTED, 429, True),
    ErrorKind.DISK_FULL: StatusPair(grpc.StatusCode.UNAVAILABLE, 503, True),
    ErrorKind.UNAUTHENTICATED: StatusPair(grpc.StatusCode.UNAUTHENTICATED, 401, False),
    ErrorKind.INTERNAL: StatusPair(grpc.StatusCode.INTERNAL, 500, False),
}


class ReceiverError(Exception):
    """An error answered to the client with the status of `kind` (and `retry_after_s` when retryable)."""

    def __init__(self, kind: ErrorKind, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.retry_after_s = retry_after_s

    @property
    def status(self) -> StatusPair:
        return STATUS[self.kind]


def malformed(message: str) -> ReceiverError:
    return ReceiverError(ErrorKind.MALFORMED, message)


def too_large(limit_bytes: int) -> ReceiverError:
    return ReceiverError(ErrorKind.TOO_LARGE, f"request larger than the limit of {limit_bytes} bytes")


def from_exception(err: BaseException, default_retry_after_s: float) -> ReceiverError:
    """Translate whatever the pipeline raised into a ReceiverError (the one place this happens)."""
    import errno

    if isinstance(err, ReceiverError):
        return err
    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
        return ReceiverError(ErrorKind.DISK_FULL, "receiver's disk is full", default_retry_after_s)
    return ReceiverError(ErrorKind.INTERNAL, f"internal error: {type(err).__name__}")


def parse_request(message_type: type[M], payload: bytes) -> M:
    """A serialized OTLP export request, or the malformed-request error naming the expected message."""
    request = message_type()
    try:
        request.ParseFromString(payload)
    except DecodeError as err:
        raise malformed(f"request is not a valid {message_type.__name__}: {err}") from None
    return request
