"""Hostile input against a real receiver over both transports: every gzip member decoded, one bad value
rejecting one span, the time window, the request-memory budget, content types answered as sent and
400s that say what is wrong (google.rpc.BadRequest)."""

from __future__ import annotations

import gzip
import socket
import time
import zlib
from pathlib import Path

import duckdb
import grpc
import httpx
import pytest
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status
from h2_client import RawGrpcConnection, frame
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from receiver_process import ReceiverProcess
from test_decode import kv, request_of, span

pytestmark = pytest.mark.slow

EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
PROTOBUF = {"content-type": "application/x-protobuf"}
NS_PER_HOUR = 3600 * 1_000_000_000


def names_written(data_dir: Path) -> list[str]:
    query = f"SELECT name FROM read_parquet('{data_dir}/spans/date=*/*.parquet') ORDER BY name"
    return [row[0] for row in duckdb.connect().execute(query).fetchall()]


def named(prefix: str, count: int, first: int) -> bytes:
    return request_of(*[span(first + n, name=f"{prefix}-{n}") for n in range(count)]).SerializeToString()


def grpc_export(endpoint: str, payload: bytes, compression: grpc.Compression | None = None, metadata=None):
    with grpc.insecure_channel(endpoint) as channel:
        call = channel.unary_unary(EXPORT, request_serializer=None, response_deserializer=None)
        return ExportTraceServiceResponse.FromString(
            call(payload, timeout=20, compression=compression, metadata=metadata)
        )


def test_every_gzip_member_is_decoded_on_both_transports(data_dir: Path) -> None:
    with ReceiverProcess(data_dir, "--keep", "all") as receiver:
        host, port = receiver.grpc_endpoint.rsplit(":", 1)
        url = f"{receiver.http_url}/v1/traces"
        # gRPC, compressed by hand: two members (grpc core alone answers INTERNAL "not all input consumed")
        two = gzip.compress(named("grpc-a", 3, 0)) + gzip.compress(named("grpc-b", 2, 10))
        with RawGrpcConnection(host, int(port)) as connection:
            answer = connection.call(EXPORT, frame(two, compressed=True), encoding="gzip")
            assert answer.grpc_status == 0, answer
            # bytes after the last member that are not a member: the request is malformed, not half-read
            answer = connection.call(EXPORT, frame(two + b"trailing", compressed=True), encoding="gzip")
            assert answer.grpc_status == grpc.StatusCode.INVALID_ARGUMENT.value[0]
            assert "gzip" in answer.grpc_message
        # HTTP: three members
        three = b"".join(gzip.compress(named(f"http-{m}", 2, 20 + 10 * i)) for i, m in enumerate("abc"))
        response = httpx.post(url, content=three, headers={**PROTOBUF, "content-encoding": "gzip"})
        assert response.status_code == 200 and response.content == b""
        response = httpx.post(url, content=three[:-3], headers={**PROTOBUF, "content-encoding": "gzip"})
        assert response.status_code == 400
        # what real clients send still works: the gRPC library's gzip and deflate, a deflate HTTP body
        assert grpc_export(receiver.grpc_endpoint, named("lib-gzip", 1, 60), grpc.Compression.Gzip) == (
            ExportTraceServiceResponse()
        )
        assert grpc_export(receiver.grpc_endpoint, named("lib-deflate", 1, 61), grpc.Compression.Deflate) == (
            ExportTraceServiceResponse()
        )
        response = httpx.post(
            url,
            content=zlib.compress(named("http-deflate", 1, 62)),
            headers={**PROTOBUF, "content-encoding": "deflate"},
        )
        assert response.status_code == 200
    assert names_written(data_dir) == sorted(
        [f"grpc-a-{n}" for n in range(3)]
        + [f"grpc-b-{n}" for n in range(2)]
        + [f"http-{m}-{n}" for m in "abc" for n in range(2)]
        + ["http-deflate-0", "lib-deflate-0", "lib-gzip-0"]
    )


def test_a_5000_digit_token_count_rejects_one_span_not_the_batch(data_dir: Path) -> None:
    def batch(first: int) -> bytes:
        spans = [
            span(first + n, name=f"s{first + n}", attributes=[kv("gen_ai.usage.input_tokens", 5)]) for n in range(10)
        ]
        spans[3] = span(first + 3, name="bad", attributes=[kv("gen_ai.usage.input_tokens", "9" * 5000)])
        return request_of(*spans).SerializeToString()

    with ReceiverProcess(data_dir, "--keep", "all") as receiver:
        response = grpc_export(receiver.grpc_endpoint, batch(0))
        assert response.partial_success.rejected_spans == 1
        assert "token count is out of range" in response.partial_success.error_message
        http = httpx.post(f"{receiver.http_url}/v1/traces", content=batch(100), headers=PROTOBUF)
        assert http.status_code == 200
        assert ExportTraceServiceResponse.FromString(http.content).partial_success.rejected_spans == 1
        metrics = receiver.metrics_text()
    assert 'agentmeter_spans_rejected_total{reason="usage"} 2.0' in metrics.splitlines()
    assert len(names_written(data_dir)) == 18 and "bad" not in names_written(data_dir)


def test_the_time_window_bounds_the_partitions_a_client_creates(data_dir: Path) -> None:
    now = time.time_ns()
    day = 24 * NS_PER_HOUR
    spans = [
        span(n, name=f"d{n}", start_time_unix_nano=now - n * day, end_time_unix_nano=now - n * day + 1)
        for n in range(300)
    ]
    spans.append(
        span(999, name="future", start_time_unix_nano=now + 3 * NS_PER_HOUR, end_time_unix_nano=now + 4 * NS_PER_HOUR)
    )
    # the receiver's defaults (7 days back, 60 minutes ahead), not the tests' open window
    flags = ("--keep", "all", "--span-max-age-hours", "168", "--span-max-future-minutes", "60")
    with ReceiverProcess(data_dir, *flags) as receiver:
        response = grpc_export(receiver.grpc_endpoint, request_of(*spans).SerializeToString())
        metrics = receiver.metrics_text()
    assert response.partial_success.rejected_spans == 300 - 7 + 1  # 0..6 days old are kept
    assert 'agentmeter_spans_rejected_total{reason="time_window"} 294.0' in metrics.splitlines()
    assert len(list((data_dir / "spans").glob("date=*"))) <= 8
    assert sorted(names_written(data_dir)) == sorted(f"d{n}" for n in range(7))


def test_request_memory_is_a_budget_answered_503_when_full(data_dir: Path) -> None:
    # 2 MiB of request memory, 1 MiB requests: two bodies still arriving hold ~1.8 MiB
    flags = ("--keep", "all", "--max-recv-msg-mib", "1", "--max-request-memory-mib", "2")
    with ReceiverProcess(data_dir, *flags) as receiver:
        host, port = receiver.http_url.removeprefix("http://").rsplit(":", 1)
        held = []
        try:
            for _ in range(2):
                sock = socket.create_connection((host, int(port)), timeout=10)
                head = f"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\nContent-Length: {1000 * 1000}\r\n\r\n"
                sock.sendall(head.encode() + b"\x00" * 900_000)
                held.append(sock)
            # bounded wait until the two bodies are in (they arrive asynchronously)
            for _attempt in range(200):
                held_bytes = next(
                    float(line.split()[1])
                    for line in receiver.metrics_text().splitlines()
                    if line.startswith("agentmeter_request_memory_bytes ")
                )
                if held_bytes >= 1_800_000:
                    break
                time.sleep(0.05)
            assert held_bytes == 1_800_000
            refused = request_of(span(0, name="refused", attributes=[kv("pad", "x" * 400_000)])).SerializeToString()
            response = httpx.post(f"{receiver.http_url}/v1/traces", content=refused, headers=PROTOBUF)
            assert response.status_code == 503
            assert response.headers["retry-after"] == "1"
            status = status_pb2.Status.FromString(response.content)
            assert status.code == 14 and "request memory" in status.message
            # health checks and small requests are not requests' memory
            assert httpx.get(f"{receiver.http_url}/healthz").status_code == 200
        finally:
            for sock in held:
                sock.close()
        # once the bodies are gone the budget is free again
        for _attempt in range(50):
            response = httpx.post(f"{receiver.http_url}/v1/traces", content=named("later", 1, 500), headers=PROTOBUF)
            if response.status_code == 200:
                break
        assert response.status_code == 200
    assert names_written(data_dir) == ["later-0"]


def test_content_types_are_answered_as_sent_and_400s_carry_bad_request(data_dir: Path) -> None:
    with ReceiverProcess(data_dir, "--keep", "all") as receiver:
        url = f"{receiver.http_url}/v1/traces"
        for content_type in ("application/protobuf", "application/x-protobuf"):
            response = httpx.post(url, content=named(content_type, 1, 0), headers={"content-type": content_type})
            assert (response.status_code, response.headers["content-type"]) == (200, content_type)
            response = httpx.post(url, content=b"\xff\xff\xff", headers={"content-type": content_type})
            assert (response.status_code, response.headers["content-type"]) == (400, content_type)
            status = status_pb2.Status.FromString(response.content)
            bad = error_details_pb2.BadRequest()
            assert status.code == 3 and status.details[0].Unpack(bad)
            assert bad.field_violations[0].field == "body"
            assert "not a valid ExportTraceServiceRequest" in bad.field_violations[0].description
        # OTLP/JSON: the violation names the JSON path
        body = b'{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"not-hex","spanId":"0102030405060708"}]}]}]}'
        response = httpx.post(url, content=body, headers={"content-type": "application/json"})
        assert response.status_code == 400
        document = response.json()
        assert document["code"] == 3
        (detail,) = document["details"]
        assert detail["@type"] == "type.googleapis.com/google.rpc.BadRequest"
        assert detail["fieldViolations"][0]["field"] == "$.resourceSpans[0].scopeSpans[0].spans[0].traceId"
        # gRPC INVALID_ARGUMENT carries the same details
        with pytest.raises(grpc.RpcError) as caught:
            grpc_export(receiver.grpc_endpoint, b"\xff\xff\xff")
        status = rpc_status.from_call(caught.value)
        bad = error_details_pb2.BadRequest()
        assert status.code == 3 and status.details[0].Unpack(bad) and bad.field_violations[0].field == "body"
