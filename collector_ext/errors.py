"""The receiver's error types and their kinds (the OpenTelemetry Collector's `internal/errors` pattern).

Every failure the receiver answers is a `ReceiverError` carrying an `ErrorKind`: the kind, and only the
kind, decides the answer. The ONE table from kind to gRPC status code, HTTP status and retryability lives
beside the transports (`collector_ext/receiver/status.py`); this module stays free of grpc and HTTP so
that every part (decode processes, pipeline, GPU metrics) can raise these without importing a transport.

Nothing is classified by class name or message text: code that knows what went wrong raises the
`ReceiverError` of that kind itself (the pipeline raises OVERLOADED / DISK_FULL for back-pressure), and
`from_exception` maps the few foreign exceptions that reach a transport by their type and errno alone.
"""

from __future__ import annotations

import enum
import errno
from typing import TypeVar

from google.protobuf.message import DecodeError, Message

M = TypeVar("M", bound=Message)


class ErrorKind(enum.Enum):
    """What went wrong, as the client needs to know it. The value is the `outcome` label of
    `agentmeter_requests`."""

    MALFORMED = "invalid"  # the request as a whole cannot be parsed: permanent
    TOO_LARGE = "too_large"  # past --max-recv-msg-mib (compressed or inflated): permanent
    UNSUPPORTED_MEDIA = "unsupported_media"  # HTTP content type / encoding we do not speak: permanent
    BODY_TIMEOUT = "body_timeout"  # the body (HTTP) or message (gRPC) did not arrive within --body-timeout-seconds
    OVERLOADED = "overloaded"  # pending data or request memory past its limit: retry later
    BUSY = "busy"  # our own concurrency limit (--max-concurrent-requests): retry later
    DISK_FULL = "disk_full"  # below --min-free-disk-mib, or ENOSPC/EDQUOT: retry later
    STORAGE_UNAVAILABLE = "storage_unavailable"  # the WAL cannot be written (EMFILE, EIO, EROFS...): retry later
    UNAUTHENTICATED = "unauthenticated"  # missing or wrong bearer token
    INTERNAL = "internal"  # a bug: logged; the request fails, the receiver goes on


# One field violation of a malformed request: (field path, description), as google.rpc.BadRequest has it.
FieldViolation = tuple[str, str]


class ReceiverError(Exception):
    """An error answered to the client with the status of its kind (receiver/status.py).

    `retry_after_s`: the back-off suggested in RetryInfo / Retry-After (retryable kinds; None: the
    configured --retry-after-seconds). `violations`: for MALFORMED, what is wrong where (BadRequest details).
    """

    def __init__(
        self,
        kind: ErrorKind,
        message: str,
        retry_after_s: float | None = None,
        violations: tuple[FieldViolation, ...] = (),
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.retry_after_s = retry_after_s
        self.violations = violations


def malformed(message: str, field: str = "body") -> ReceiverError:
    """The whole request is unusable; `field` names where (a JSON path, or `body`)."""
    return ReceiverError(ErrorKind.MALFORMED, message, violations=((field, message),))


def too_large(limit_bytes: int) -> ReceiverError:
    return ReceiverError(ErrorKind.TOO_LARGE, f"request larger than the limit of {limit_bytes} bytes")


# errno values of a full disk (a quota counts as full)
_DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


def from_exception(err: BaseException) -> ReceiverError:
    """The ReceiverError for whatever reached a transport (the one place this translation happens).

    A ReceiverError is answered as it is. An OSError is storage trouble of the receiver, not bad data:
    retryable (DISK_FULL for ENOSPC/EDQUOT, STORAGE_UNAVAILABLE otherwise), since the same request will
    succeed once the disk has room or descriptors are free. Anything else is a bug: INTERNAL.
    """
    if isinstance(err, ReceiverError):
        return err
    if isinstance(err, OSError):
        if err.errno in _DISK_FULL_ERRNOS:
            return ReceiverError(ErrorKind.DISK_FULL, "receiver's disk is full")
        return ReceiverError(
            ErrorKind.STORAGE_UNAVAILABLE, f"receiver cannot write its data now: {err.strerror or err}"
        )
    return ReceiverError(ErrorKind.INTERNAL, f"internal error: {type(err).__name__}")


def parse_request(message_type: type[M], payload: bytes) -> M:
    """A serialized OTLP export request, or the malformed-request error naming the expected message."""
    request = message_type()
    try:
        request.ParseFromString(payload)
    except DecodeError as err:
        raise malformed(f"request is not a valid {message_type.__name__}: {err}") from None
    return request
