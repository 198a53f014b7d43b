"""Bad input over real gRPC (raw bytes through a generic client call) and real HTTP: the right status,
the good spans of a batch kept, and the receiver still serving afterwards."""

from __future__ import annotations

import gzip
from pathlib import Path

import duckdb
import grpc
import httpx
import pytest
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from receiver_process import ReceiverProcess
from test_decode import MAX_VALUE_CHARS, kv, request_of, span

pytestmark = pytest.mark.slow

EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
MIB = 1024 * 1024
PROTOBUF = {"content-type": "application/x-protobuf"}


def raw_export(
    endpoint: str, payload: bytes, compression: grpc.Compression | None = None, metadata=None
) -> ExportTraceServiceResponse:
    with grpc.insecure_channel(endpoint, options=[("grpc.max_send_message_length", 64 * MIB)]) as channel:
        call = channel.unary_unary(EXPORT, request_serializer=None, response_deserializer=None)
        return ExportTraceServiceResponse.FromString(
            call(payload, timeout=20, compression=compression, metadata=metadata)
        )


def rpc_error(endpoint: str, payload: bytes, **kwargs) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        raw_export(endpoint, payload, **kwargs)
    return caught.value


def good_request(n: int) -> bytes:
    return request_of(span(n, name=f"good-{n}")).SerializeToString()


def assert_still_serving(receiver: ReceiverProcess, n: int) -> None:
    assert raw_export(receiver.grpc_endpoint, good_request(n)) == ExportTraceServiceResponse()
    response = httpx.post(f"{receiver.http_url}/v1/traces", content=good_request(n + 1000), headers=PROTOBUF)
    assert response.status_code == 200, response.text


def non_utf8_request() -> bytes:
    good = request_of(span(0, name="AAAA")).SerializeToString()
    return good.replace(b"AAAA", b"A\xff\xfeA")


def names_written(data_dir: Path) -> list[str]:
    return [
        row[0]
        for row in duckdb.connect()
        .execute(f"SELECT name FROM read_parquet('{data_dir}/spans/date=*/*.parquet') ORDER BY name")
        .fetchall()
    ]


def test_bad_input_statuses_and_the_process_stays_up(data_dir: Path) -> None:
    with ReceiverProcess(data_dir, "--keep", "all", "--max-recv-msg-mib", "1") as receiver:
        endpoint, url = receiver.grpc_endpoint, f"{receiver.http_url}/v1/traces"

        # malformed protobuf
        err = rpc_error(endpoint, b"\xff\xff\xff\xff")
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "not a valid ExportTraceServiceRequest" in err.details()
        response = httpx.post(url, content=b"\xff\xff\xff\xff", headers=PROTOBUF)
        assert response.status_code == 400
        assert status_pb2.Status.FromString(response.content).code == 3  # INVALID_ARGUMENT
        assert_still_serving(receiver, 1)

        # non-UTF-8 in a string field: upb rejects the whole request at parse time
        err = rpc_error(endpoint, non_utf8_request())
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert httpx.post(url, content=non_utf8_request(), headers=PROTOBUF).status_code == 400
        assert_still_serving(receiver, 2)

        # per-span rejections: exact count and reasons, the rest of the batch kept
        batch = request_of(
            span(10, name="kept-a"),
            span(11, trace_id=b"\x01" * 5),
            span(12, span_id=b"\x01" * 7),
            span(13, attributes=[kv("gen_ai.usage.input_tokens", -1)]),
            span(14, attributes=[kv("gen_ai.usage.output_tokens", "lots")]),
            span(15, start_time_unix_nano=20, end_time_unix_nano=10),
            span(16, name="kept-b"),
        ).SerializeToString()
        response = raw_export(endpoint, batch)
        assert response.partial_success.rejected_spans == 5
        message = response.partial_success.error_message
        for reason in (
            "span 1 (",
            "trace_id is 5 bytes, want 16",
            "span_id is 7 bytes, want 8",
            "gen_ai.usage.input_tokens",
            "gen_ai.usage.output_tokens",
            "end_time before start_time (10 < 20)",
        ):
            assert reason in message, (reason, message)
        http_response = httpx.post(url, content=batch, headers=PROTOBUF)
        assert http_response.status_code == 200
        assert ExportTraceServiceResponse.FromString(http_response.content).partial_success.rejected_spans == 5

        # huge attribute values are accepted and capped
        huge = request_of(span(20, name="huge", attributes=[kv("gen_ai.prompt", "p" * 600_000)])).SerializeToString()
        assert raw_export(endpoint, huge) == ExportTraceServiceResponse()

        # a gzip body that expands past the 1 MiB limit: gRPC (client-side gzip) and HTTP
        bomb_request = request_of(span(30, name="bomb", attributes=[kv("pad", "0" * (3 * MIB))])).SerializeToString()
        err = rpc_error(endpoint, bomb_request, compression=grpc.Compression.Gzip)
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        bomb = gzip.compress(bomb_request)
        assert len(bomb) < MIB // 50
        response = httpx.post(url, content=bomb, headers={**PROTOBUF, "content-encoding": "gzip"})
        assert response.status_code == 413
        # a plain body past the limit
        assert httpx.post(url, content=bomb_request, headers=PROTOBUF).status_code == 413
        # truncated and corrupt gzip bodies
        assert httpx.post(url, content=bomb[:100], headers={**PROTOBUF, "content-encoding": "gzip"}).status_code == 400
        assert httpx.post(url, content=b"nope", headers={**PROTOBUF, "content-encoding": "gzip"}).status_code == 400
        assert_still_serving(receiver, 3)

        # empty requests: OK, nothing written
        assert raw_export(endpoint, b"") == ExportTraceServiceResponse()
        assert httpx.post(url, content=b"", headers=PROTOBUF).status_code == 200
        assert_still_serving(receiver, 4)

        metrics = receiver.metrics_text()
        assert 'agentmeter_requests_total{outcome="invalid",signal="traces",transport="grpc"} 2.0' in metrics
        assert 'agentmeter_requests_total{outcome="too_large",signal="traces",transport="http"} 2.0' in metrics
        assert 'agentmeter_spans_rejected_total{reason="trace_id"} 2.0' in metrics

    written = names_written(data_dir)
    goods = sorted(f"good-{n}" for k in (1, 2, 3, 4) for n in (k, k + 1000))
    # the batch went twice (gRPC, HTTP) with the same ids: a re-sent span replaces the held one
    assert written == sorted(["huge", *goods, "kept-a", "kept-b"])
    (prompt,) = (
        duckdb.connect()
        .execute(
            f"SELECT attributes['gen_ai.prompt'] FROM read_parquet('{data_dir}/spans/date=*/*.parquet') WHERE name = 'huge'"
        )
        .fetchone()
    )
    assert prompt == "p" * MAX_VALUE_CHARS + "...[truncated by agentmeter; original length 600000 chars]"


def test_overload_answers_unavailable_with_retry_info(data_dir: Path) -> None:
    # traces held 60 s, WAL limit 1 MiB: the third ~0.6 MiB request finds the receiver full
    flags = ("--keep", "all", "--max-pending-mib", "1", "--trace-grace-seconds", "60", "--retry-after-seconds", "2.5")
    big = [
        request_of(span(n, name=f"big-{n}", attributes=[kv("pad", "x" * 600_000)])).SerializeToString()
        for n in range(3)
    ]
    with ReceiverProcess(data_dir, *flags) as receiver:
        raw_export(receiver.grpc_endpoint, big[0])
        raw_export(receiver.grpc_endpoint, big[1])
        err = rpc_error(receiver.grpc_endpoint, big[2])
        assert err.code() == grpc.StatusCode.UNAVAILABLE
        assert "receiver cannot take more data now" in err.details()
        trailers = dict(err.trailing_metadata())
        retry = error_details_pb2.RetryInfo.FromString(trailers["google.rpc.retryinfo-bin"])
        assert (retry.retry_delay.seconds, retry.retry_delay.nanos) == (2, 500_000_000)
        status = rpc_status.from_call(err)
        assert status.code == 14 and len(status.details) == 1
        detail = error_details_pb2.RetryInfo()
        assert status.details[0].Unpack(detail) and detail == retry

        response = httpx.post(f"{receiver.http_url}/v1/traces", content=big[2], headers=PROTOBUF)
        assert response.status_code == 503
        assert response.headers["retry-after"] == "3"
        assert status_pb2.Status.FromString(response.content).code == 14
    # everything acknowledged is written at shutdown; the refused request is not
    assert names_written(data_dir) == ["big-0", "big-1"]


def test_bearer_token(data_dir: Path) -> None:
    with ReceiverProcess(data_dir, "--keep", "all", "--bearer-token", "s3cret") as receiver:
        payload = good_request(1)
        err = rpc_error(receiver.grpc_endpoint, payload)
        assert err.code() == grpc.StatusCode.UNAUTHENTICATED
        err = rpc_error(receiver.grpc_endpoint, payload, metadata=[("authorization", "Bearer wrong")])
        assert err.code() == grpc.StatusCode.UNAUTHENTICATED
        ok = raw_export(receiver.grpc_endpoint, payload, metadata=[("authorization", "Bearer s3cret")])
        assert ok == ExportTraceServiceResponse()
        url = f"{receiver.http_url}/v1/traces"
        assert httpx.post(url, content=payload, headers=PROTOBUF).status_code == 401
        headers = {**PROTOBUF, "authorization": "Bearer s3cret"}
        assert httpx.post(url, content=good_request(2), headers=headers).status_code == 200
    assert names_written(data_dir) == ["good-1", "good-2"]


def test_empty_request_parses() -> None:
    assert ExportTraceServiceRequest.FromString(b"") == ExportTraceServiceRequest()
