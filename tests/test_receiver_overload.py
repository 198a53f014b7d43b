"""Nothing transient is answered as permanent: our own concurrency limit (UNAVAILABLE + RetryInfo, never gRPC's
RESOURCE_EXHAUSTED without it), 128 concurrent exports from real clients, and GPU metrics export failures."""

from __future__ import annotations

import errno
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import duckdb
import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from receiver_process import ReceiverProcess
from test_decode import request_of, span
from test_receiver_http import dcgm_request

from collector_ext.config import ReceiverConfig
from collector_ext.decode.pool import DecodePool
from collector_ext.gpu.metrics import GpuMetricsReceiver
from collector_ext.receiver.grpc_server import RETRY_INFO_TRAILER, GrpcHandlers, build_grpc_server
from collector_ext.receiver.ingest import TraceIngest
from collector_ext.receiver.telemetry import Telemetry
from collector_ext.storage.dataset_files import DatasetFiles
from collector_ext.storage.wal import WalError

EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
METRICS_EXPORT = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"
CLIENTS = 128


def raw_call(endpoint: str, method: str, payload: bytes, own_connection: bool = False) -> grpc.RpcError | bytes:
    """One unary call on a fresh channel (`own_connection`: not shared with the process's other channels)."""
    options = [("grpc.use_local_subchannel_pool", 1)] if own_connection else []
    with grpc.insecure_channel(endpoint, options=options) as channel:
        call = channel.unary_unary(method, request_serializer=None, response_deserializer=None)
        try:
            return call(payload, timeout=60)
        except grpc.RpcError as err:
            return err


def assert_retryable(err: grpc.RpcError, seconds: int, nanos: int = 0) -> None:
    """UNAVAILABLE with RetryInfo both in the status details and in the Python exporter's trailer."""
    assert err.code() == grpc.StatusCode.UNAVAILABLE, (err.code(), err.details())
    trailer = error_details_pb2.RetryInfo.FromString(dict(err.trailing_metadata())[RETRY_INFO_TRAILER])
    assert (trailer.retry_delay.seconds, trailer.retry_delay.nanos) == (seconds, nanos)
    status = rpc_status.from_call(err)
    detail = error_details_pb2.RetryInfo()
    assert status.code == 14 and status.details[0].Unpack(detail) and detail == trailer


def in_process_receiver(tmp_path: Path, pipeline, metrics_export=None, **settings):
    config = ReceiverConfig(data_dir=tmp_path, writer_id="w", retry_after_seconds=2.0, **settings)
    telemetry = Telemetry()
    ingest = TraceIngest(pipeline, telemetry, config, DecodePool(0))
    handlers = GrpcHandlers(ingest, telemetry, config, metrics_export)
    server, port = build_grpc_server(lambda executor: [handlers.generic_handler(executor)], "127.0.0.1:0", config)
    server.start()
    return server, f"127.0.0.1:{port}"


def test_past_our_concurrency_limit_the_answer_is_unavailable_with_retry_info(tmp_path: Path) -> None:
    """Two exports held in the WAL write, limit 2: the third is refused retryably, and served once they end."""
    entered = threading.Semaphore(0)
    release = threading.Event()

    class HeldPipeline:
        def accept(self, payload, decoded, received_time_ns) -> None:
            entered.release()
            assert release.wait(30)

    server, endpoint = in_process_receiver(tmp_path, HeldPipeline(), max_concurrent_requests=2)
    try:
        with ThreadPoolExecutor(2) as pool:
            held = [pool.submit(raw_call, endpoint, EXPORT, request_of(span(n)).SerializeToString()) for n in range(2)]
            assert entered.acquire(timeout=20) and entered.acquire(timeout=20)
            refused = raw_call(endpoint, EXPORT, request_of(span(5)).SerializeToString())
            assert isinstance(refused, grpc.RpcError)
            assert_retryable(refused, 2)
            assert refused.details() == "too many concurrent requests (limit 2)"
            release.set()
            assert [future.result(30) for future in held] == [b"", b""]
        assert raw_call(endpoint, EXPORT, request_of(span(6)).SerializeToString()) == b""
    finally:
        release.set()
        server.stop(None).wait(10)


@pytest.mark.slow
def test_128_concurrent_exports_from_real_clients_are_kept_or_retried(data_dir: Path) -> None:
    payloads = [
        request_of(*[span(c * 1000 + n, name=f"c{c}") for n in range(200)]).SerializeToString() for c in range(CLIENTS)
    ]
    with ReceiverProcess(data_dir, "--keep", "all") as receiver:
        # 128 raw gRPC clients, each on its own connection (128 pods), all at once: every answer is OK or
        # UNAVAILABLE with RetryInfo, none is RESOURCE_EXHAUSTED (which OTLP clients drop without RetryInfo)
        start = threading.Barrier(CLIENTS)

        def one(payload: bytes) -> grpc.RpcError | bytes:
            start.wait(30)
            return raw_call(receiver.grpc_endpoint, EXPORT, payload, own_connection=True)

        with ThreadPoolExecutor(CLIENTS) as pool:
            answers = list(pool.map(one, payloads))
        refused = [answer for answer in answers if isinstance(answer, grpc.RpcError)]
        for err in refused:
            assert_retryable(err, 1)
        kept = {c for c, answer in enumerate(answers) if answer == b""}
        assert len(kept) + len(refused) == CLIENTS

        # the OTel SDK exporter, 128 at once over the process's one connection: past our limit, or past the
        # connection's 100 streams (HTTP/2 REFUSED_STREAM, also UNAVAILABLE), it retries: every export succeeds
        spans_by_client = []
        for c in range(CLIENTS):
            provider = TracerProvider(resource=Resource.create({"service.name": f"sdk-{c}"}))
            memory = InMemorySpanExporter()
            provider.add_span_processor(SimpleSpanProcessor(memory))
            tracer = provider.get_tracer("overload")
            for n in range(20):
                with tracer.start_as_current_span(f"sdk-{c}-{n}"):
                    pass
            spans_by_client.append(memory.get_finished_spans())
        sdk_start = threading.Barrier(CLIENTS)

        def sdk_export(spans) -> SpanExportResult:
            exporter = OTLPSpanExporter(endpoint=receiver.grpc_endpoint, insecure=True, timeout=60)
            sdk_start.wait(30)
            try:
                return exporter.export(spans)
            finally:
                exporter.shutdown()

        with ThreadPoolExecutor(CLIENTS) as pool:
            results = list(pool.map(sdk_export, spans_by_client))
        assert results == [SpanExportResult.SUCCESS] * CLIENTS
    counts = dict(
        duckdb.connect()
        .execute(
            f"""SELECT starts_with(name, 'sdk-'), count(*) FROM read_parquet('{data_dir}/spans/date=*/*.parquet')
                GROUP BY ALL"""
        )
        .fetchall()
    )
    # every acknowledged span written exactly once: 200 per kept raw request, 20 per SDK client
    assert counts == {False: 200 * len(kept), True: 20 * CLIENTS}


@pytest.mark.parametrize(
    ("failure", "detail"),
    [
        (errno.EMFILE, "receiver cannot write its data now"),  # descriptors exhausted: transient
        (errno.EROFS, "receiver cannot write its data now"),  # an unwritable WAL: the data is fine
        (errno.ENOSPC, "receiver's disk is full"),
    ],
)
def test_gpu_metrics_export_failures_are_retryable(tmp_path: Path, failure: int, detail: str, monkeypatch) -> None:
    config = ReceiverConfig(data_dir=tmp_path, writer_id="w", fsync="never")
    gpu = GpuMetricsReceiver(config, DatasetFiles(tmp_path, "w"))

    def unwritable(payload: bytes) -> int:
        raise WalError(failure, "write-ahead log: failed")

    monkeypatch.setattr(gpu.wal, "append", unwritable)
    server, endpoint = in_process_receiver(tmp_path, None, gpu.export)
    try:
        answer = raw_call(endpoint, METRICS_EXPORT, dcgm_request(0.5).SerializeToString())
        assert isinstance(answer, grpc.RpcError)
        assert_retryable(answer, 2)
        assert answer.details().startswith(detail)
        monkeypatch.undo()  # the disk is back: the same request is kept
        assert raw_call(endpoint, METRICS_EXPORT, dcgm_request(0.5).SerializeToString()) == b""
    finally:
        server.stop(None).wait(10)
        gpu.close()
