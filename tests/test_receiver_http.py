"""OTLP/HTTP against a real receiver: JSON and protobuf, gzip, content-type echo, status codes, and the
other routes (/metrics, /healthz, /v1/demand, /v1/metrics)."""

from __future__ import annotations

import gzip
import time
from pathlib import Path

import duckdb
import httpx
import pytest
from google.rpc import status_pb2
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics
from receiver_process import ReceiverProcess
from test_decode import CORPUS, TRACE, request_of, span

from collector_ext.decode import otlp_json

pytestmark = pytest.mark.slow

JSON_FILES = [
    "openai__otel-contrib-openai-v2__2.4b0",
    "anthropic__openinference-anthropic__3.1.0",
    "openai__traceloop-openai__0.40.14",
]
JSON = {"content-type": "application/json"}
PROTOBUF = {"content-type": "application/x-protobuf"}


def corpus_span_count(stem: str) -> int:
    request = ExportTraceServiceRequest.FromString((CORPUS / f"{stem}.pb").read_bytes())
    return sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)


def rows_by_file(data_dir: Path) -> dict[str, int]:
    query = f"""SELECT resource_attributes['corpus.file'] AS f, count(*)
                FROM read_parquet('{data_dir}/spans/date=*/*.parquet') GROUP BY f ORDER BY f"""
    return {f or "": n for f, n in duckdb.connect().execute(query).fetchall()}


def dcgm_request(value: float) -> ExportMetricsServiceRequest:
    point = NumberDataPoint(
        time_unix_nano=1_800_000_000_000_000_000,
        as_double=value,
        attributes=[
            KeyValue(key="gpu", value=AnyValue(string_value="0")),
            KeyValue(key="UUID", value=AnyValue(string_value="GPU-abc")),
        ],
    )
    metric = Metric(name="DCGM_FI_PROF_GR_ENGINE_ACTIVE", gauge=Gauge(data_points=[point]))
    return ExportMetricsServiceRequest(
        resource_metrics=[ResourceMetrics(scope_metrics=[ScopeMetrics(metrics=[metric])])]
    )


def test_http_json_and_protobuf(data_dir: Path) -> None:
    with ReceiverProcess(data_dir, "--keep", "all") as receiver:
        url = f"{receiver.http_url}/v1/traces"
        # OTLP/JSON bodies as captured (hex ids, int64 strings); the first one gzip-encoded
        for i, stem in enumerate(JSON_FILES):
            body = (CORPUS / f"{stem}.json").read_bytes()
            headers = (
                {**JSON, "content-encoding": "gzip"} if i == 0 else {"content-type": "application/json; charset=utf-8"}
            )
            response = httpx.post(url, content=gzip.compress(body) if i == 0 else body, headers=headers)
            assert response.status_code == 200, response.text
            assert response.headers["content-type"] == "application/json"
            assert response.json() == {}

        # partial success answered in JSON: rejectedSpans as an int64 string, the reason named
        bad = otlp_json.to_json_dict(request_of(span(0, name="ok-json"), span(1, span_id=b"\x01\x02")))
        response = httpx.post(url, json=bad)
        assert response.status_code == 200
        partial = response.json()["partialSuccess"]
        assert partial["rejectedSpans"] == "1"
        assert "span_id is 2 bytes, want 8" in partial["errorMessage"]

        # protobuf, gzip, partial success in protobuf
        body = request_of(span(2, name="ok-proto"), span(3, end_time_unix_nano=1)).SerializeToString()
        response = httpx.post(url, content=gzip.compress(body), headers={**PROTOBUF, "content-encoding": "gzip"})
        assert response.status_code == 200 and response.headers["content-type"] == "application/x-protobuf"
        assert ExportTraceServiceResponse.FromString(response.content).partial_success.rejected_spans == 1

        # errors in the request's content type
        response = httpx.post(
            url, content=b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"spanId": "xyz"}]}]}]}', headers=JSON
        )
        assert response.status_code == 400 and response.headers["content-type"] == "application/json"
        assert response.json()["code"] == 3 and "not a hex string" in response.json()["message"]
        response = httpx.post(url, content=b"hello", headers={"content-type": "text/plain"})
        assert response.status_code == 415
        assert "unsupported content type 'text/plain'" in status_pb2.Status.FromString(response.content).message
        response = httpx.post(url, content=body, headers={**PROTOBUF, "content-encoding": "br"})
        assert response.status_code == 415
        assert httpx.get(url).status_code == 405
        assert httpx.post(f"{receiver.http_url}/v1/logs", content=body, headers=PROTOBUF).status_code == 404

        # metrics over HTTP, protobuf and JSON
        response = httpx.post(
            f"{receiver.http_url}/v1/metrics", content=dcgm_request(0.5).SerializeToString(), headers=PROTOBUF
        )
        assert response.status_code == 200
        assert ExportMetricsServiceResponse.FromString(response.content) == ExportMetricsServiceResponse()
        response = httpx.post(f"{receiver.http_url}/v1/metrics", json=otlp_json.to_json_dict(dcgm_request(0.75)))
        assert response.status_code == 200 and response.json() == {}
        assert httpx.post(f"{receiver.http_url}/v1/metrics", content=b"\x0a\xff", headers=PROTOBUF).status_code == 400

        # other routes
        assert httpx.get(f"{receiver.http_url}/healthz").json() == {"status": "ok"}
        metrics = httpx.get(f"{receiver.http_url}/metrics")
        assert metrics.headers["content-type"].startswith("text/plain")
        assert 'agentmeter_requests_total{outcome="partial",signal="traces",transport="http"} 2.0' in metrics.text
        demand = httpx.get(f"{receiver.http_url}/v1/demand", params={"agent": "planner", "warmFloor": "2"})
        assert demand.status_code == 200
        assert (demand.json()["inFlight"], demand.json()["value"]) == (0, 2)
        demand = httpx.get(f"{receiver.http_url}/v1/demand")
        assert demand.status_code == 400 and "agent, namespace or service" in demand.json()["error"]

    expected = {stem: corpus_span_count(stem) for stem in JSON_FILES} | {"": 2}
    assert rows_by_file(data_dir) == expected
    names = (
        duckdb.connect()
        .execute(
            f"SELECT name FROM read_parquet('{data_dir}/spans/date=*/*.parquet') WHERE trace_id = ? ORDER BY name",
            [TRACE],
        )
        .fetchall()
    )
    assert names == [("ok-json",), ("ok-proto",)]
    values = (
        duckdb.connect()
        .execute(f"SELECT value FROM read_parquet('{data_dir}/gpu_metrics/date=*/*.parquet') ORDER BY value")
        .fetchall()
    )
    assert values == [(0.5,), (0.75,)]


def test_json_request_equals_protobuf_request_end_to_end(tmp_path: Path) -> None:
    """The same capture sent as JSON to one receiver and as protobuf to another gives identical rows."""
    stem = "openai-agents__openinference-openai-agents__2.6.0__genai-semconv"
    tables = []
    for kind in ("json", "pb"):
        data_dir = tmp_path / kind
        with ReceiverProcess(data_dir, "--keep", "all") as receiver:
            body = (CORPUS / f"{stem}.{kind}").read_bytes()
            headers = JSON if kind == "json" else PROTOBUF
            assert httpx.post(f"{receiver.http_url}/v1/traces", content=body, headers=headers).status_code == 200
            # written as whole traces (state ok) by both, not cut short by the stop (shutdown_flush) in one
            deadline = time.monotonic() + 20
            while f"agentmeter_spans_written_total {corpus_span_count(stem)}.0" not in receiver.metrics_text():
                assert time.monotonic() < deadline, receiver.metrics_text()
                time.sleep(0.05)
        tables.append(
            duckdb.connect()
            .execute(
                f"""SELECT * EXCLUDE (received_time) FROM read_parquet('{data_dir}/spans/date=*/*.parquet')
                    ORDER BY span_id"""
            )
            .fetchall()
        )
    assert len(tables[0]) == corpus_span_count(stem)
    assert tables[0] == tables[1]


def test_too_many_concurrent_requests_is_429_with_retry_after(tmp_path: Path) -> None:
    """One export in progress (its WAL write held) and --max-concurrent-requests 1: the next is 429."""
    import threading

    from fastapi.testclient import TestClient

    from collector_ext.config import ReceiverConfig
    from collector_ext.decode.pool import DecodePool
    from collector_ext.receiver.http_server import build_app
    from collector_ext.receiver.ingest import TraceIngest
    from collector_ext.receiver.telemetry import Telemetry

    entered, release = threading.Event(), threading.Event()

    class HeldPipeline:
        def accept(self, payload, decoded, received_time_ns) -> None:
            entered.set()
            assert release.wait(20)

    config = ReceiverConfig(data_dir=tmp_path, retry_after_seconds=1.5, max_concurrent_requests=1)
    telemetry = Telemetry()
    app = build_app(TraceIngest(HeldPipeline(), telemetry, config, DecodePool(0)), telemetry, config)
    body = request_of(span(1)).SerializeToString()
    first: list[int] = []
    worker = threading.Thread(
        target=lambda: first.append(TestClient(app).post("/v1/traces", content=body, headers=PROTOBUF).status_code)
    )
    worker.start()
    try:
        assert entered.wait(20)
        response = TestClient(app).post("/v1/traces", content=body, headers=PROTOBUF)
    finally:
        release.set()
        worker.join(20)
    assert response.status_code == 429
    assert response.headers["retry-after"] == "2"
    status = status_pb2.Status.FromString(response.content)
    assert (status.code, status.message) == (14, "too many concurrent requests (limit 1)")  # UNAVAILABLE
    assert first == [200]


def test_metrics_endpoint_reports_the_pipeline(data_dir: Path) -> None:
    stem = "openai__otel-contrib-openai-v2__2.4b0"
    spans = corpus_span_count(stem)
    with ReceiverProcess(data_dir, "--keep", "all") as receiver:
        body = (CORPUS / f"{stem}.pb").read_bytes()
        assert httpx.post(f"{receiver.http_url}/v1/traces", content=body, headers=PROTOBUF).status_code == 200
        deadline = time.monotonic() + 20
        while f"agentmeter_spans_written_total {spans}.0" not in receiver.metrics_text():
            assert time.monotonic() < deadline, receiver.metrics_text()
            time.sleep(0.1)
        text = receiver.metrics_text()
    for line in (
        f"agentmeter_spans_received_total {spans}.0",
        "agentmeter_traces_held 0.0",
        "agentmeter_spans_held 0.0",
        'agentmeter_parquet_files_total{pipeline="spans"} 1.0',
        'agentmeter_parquet_files_total{pipeline="gpu_metrics"} 0.0',
        'agentmeter_wal_bytes{pipeline="gpu_metrics"} 0.0',
        'agentmeter_parquet_write_failures_total{pipeline="spans"} 0.0',
        'agentmeter_wal_corrupt_records_total{pipeline="spans"} 0.0',
        'agentmeter_backpressure_refusals_total{pipeline="spans",reason="pending"} 0.0',
        "agentmeter_parquet_quarantined_files_total 0.0",
        "agentmeter_gpu_samples_written_total 0.0",
        'agentmeter_requests_total{outcome="ok",signal="traces",transport="http"} 1.0',
        'agentmeter_export_latency_seconds_count{signal="traces",transport="http"} 1.0',
    ):
        assert line in text.splitlines(), line
