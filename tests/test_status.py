"""The one table from an error's kind to its gRPC code, HTTP status and retryability (receiver/status.py),
table-driven as the Collector's `internal/errors` tests are, and the translation of foreign exceptions by
type and errno only (errors.from_exception)."""

from __future__ import annotations

import errno

import grpc
import pytest
from google.rpc import code_pb2, error_details_pb2

from collector_ext.errors import ErrorKind, ReceiverError, from_exception, malformed
from collector_ext.receiver.status import STATUS, retry_after_header, rpc_status
from collector_ext.storage.wal import WalError

# kind -> (gRPC code, HTTP status, retryable): the OTLP spec's "Failures" and "Throttling" sections
EXPECTED = {
    ErrorKind.MALFORMED: (grpc.StatusCode.INVALID_ARGUMENT, 400, False),
    ErrorKind.TOO_LARGE: (grpc.StatusCode.RESOURCE_EXHAUSTED, 413, False),
    ErrorKind.UNSUPPORTED_MEDIA: (grpc.StatusCode.INVALID_ARGUMENT, 415, False),
    ErrorKind.BODY_TIMEOUT: (grpc.StatusCode.DEADLINE_EXCEEDED, 408, False),
    ErrorKind.OVERLOADED: (grpc.StatusCode.UNAVAILABLE, 503, True),
    ErrorKind.BUSY: (grpc.StatusCode.UNAVAILABLE, 429, True),
    ErrorKind.DISK_FULL: (grpc.StatusCode.UNAVAILABLE, 503, True),
    ErrorKind.STORAGE_UNAVAILABLE: (grpc.StatusCode.UNAVAILABLE, 503, True),
    ErrorKind.UNAUTHENTICATED: (grpc.StatusCode.UNAUTHENTICATED, 401, False),
    ErrorKind.INTERNAL: (grpc.StatusCode.INTERNAL, 500, False),
}


def test_every_kind_has_exactly_one_answer() -> None:
    assert set(STATUS) == set(ErrorKind) == set(EXPECTED)


@pytest.mark.parametrize("kind", list(ErrorKind), ids=lambda kind: kind.value)
def test_kind_to_grpc_http_and_retry(kind: ErrorKind) -> None:
    grpc_code, http_status, retryable = EXPECTED[kind]
    answer = STATUS[kind]
    assert (answer.grpc_code, answer.http_status, answer.retryable) == (grpc_code, http_status, retryable)
    status = rpc_status(ReceiverError(kind, "why", retry_after_s=2.5 if retryable else None), default_retry_s=7.0)
    assert status.code == getattr(code_pb2, grpc_code.name)
    assert status.message == "why"
    retry = [d for d in status.details if d.Is(error_details_pb2.RetryInfo.DESCRIPTOR)]
    if retryable:
        info = error_details_pb2.RetryInfo()
        assert len(retry) == 1 and retry[0].Unpack(info)
        assert (info.retry_delay.seconds, info.retry_delay.nanos) == (2, 500_000_000)
        # a retryable answer is never RESOURCE_EXHAUSTED: OTLP clients drop that without RetryInfo
        assert grpc_code == grpc.StatusCode.UNAVAILABLE
    else:
        assert retry == []


def test_retry_delay_defaults_to_the_configured_one_and_rounds_up_for_http() -> None:
    busy = ReceiverError(ErrorKind.BUSY, "busy")
    (detail,) = rpc_status(busy, default_retry_s=1.25).details
    info = error_details_pb2.RetryInfo()
    assert detail.Unpack(info) and (info.retry_delay.seconds, info.retry_delay.nanos) == (1, 250_000_000)
    assert retry_after_header(busy, 1.25) == "2"
    assert retry_after_header(ReceiverError(ErrorKind.OVERLOADED, "x", retry_after_s=0.1), 5.0) == "1"


def test_a_malformed_request_carries_bad_request_details() -> None:
    status = rpc_status(malformed("$.resourceSpans[0].spanId is not a hex string", "$.resourceSpans[0].spanId"), 1.0)
    (detail,) = status.details
    bad = error_details_pb2.BadRequest()
    assert detail.Unpack(bad)
    assert [(v.field, v.description) for v in bad.field_violations] == [
        ("$.resourceSpans[0].spanId", "$.resourceSpans[0].spanId is not a hex string")
    ]


@pytest.mark.parametrize(
    ("raised", "kind", "retry_after_s"),
    [
        (ReceiverError(ErrorKind.BUSY, "x", 3.0), ErrorKind.BUSY, 3.0),
        # the durable writer's refusals (storage/batch_writer.py) are typed where they are raised
        (ReceiverError(ErrorKind.OVERLOADED, "300 MiB of spans not yet written", 7.0), ErrorKind.OVERLOADED, 7.0),
        (ReceiverError(ErrorKind.DISK_FULL, "its disk is almost full", 2.0), ErrorKind.DISK_FULL, 2.0),
        # the reason's words play no part: only the kind the raiser chose
        (ReceiverError(ErrorKind.OVERLOADED, "disk disk disk", 2.0), ErrorKind.OVERLOADED, 2.0),
        (OSError(errno.ENOSPC, "No space left on device"), ErrorKind.DISK_FULL, None),
        (WalError(errno.EDQUOT, "write-ahead log: quota"), ErrorKind.DISK_FULL, None),
        (OSError(errno.EMFILE, "Too many open files"), ErrorKind.STORAGE_UNAVAILABLE, None),
        (WalError(errno.EIO, "write-ahead log fsync: I/O error"), ErrorKind.STORAGE_UNAVAILABLE, None),
        (KeyError("x"), ErrorKind.INTERNAL, None),
        (ValueError("disk is full"), ErrorKind.INTERNAL, None),  # a message saying "disk" is not a full disk
    ],
)
def test_from_exception_by_type_and_errno(raised: BaseException, kind: ErrorKind, retry_after_s) -> None:
    mapped = from_exception(raised)
    assert (mapped.kind, mapped.retry_after_s) == (kind, retry_after_s)
    if kind is ErrorKind.INTERNAL:
        assert mapped.message == f"internal error: {type(raised).__name__}"


def test_a_class_named_overloaded_is_not_special() -> None:
    class Overloaded(Exception):  # the name alone used to make an UNAVAILABLE
        retry_after = 1.0

    assert from_exception(Overloaded("busy")).kind is ErrorKind.INTERNAL
