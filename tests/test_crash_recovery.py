"""kill -9 at any moment loses no acknowledged span, and the restart writes none twice.

A client streams requests (each span id unique) and records exactly which requests the receiver
acknowledged. The receiver process is SIGKILLed while the stream runs, restarted on the same data
directory (same writer id: it replays its WAL), killed again at another moment, and finally stopped with
SIGTERM. Then every acknowledged span must be in the Parquet dataset exactly once.
"""

from __future__ import annotations

import threading
import time

import duckdb
import grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span
from receiver_process import ReceiverProcess

EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
TRACES_PER_REQUEST = 5
MAX_REQUESTS = 3000  # bound on the whole stream
MAX_SECONDS = 60.0


def _attr(key: str, value: str | int) -> KeyValue:
    any_value = AnyValue(int_value=value) if isinstance(value, int) else AnyValue(string_value=value)
    return KeyValue(key=key, value=any_value)


def agent_request(request_no: int) -> tuple[bytes, set[tuple[str, str]]]:
    """Complete agent traces: an invoke_agent root with one chat child each; ids derived from request_no."""
    spans, ids = [], set()
    now = time.time_ns()
    for t in range(TRACES_PER_REQUEST):
        trace_id = (request_no * TRACES_PER_REQUEST + t + 1).to_bytes(16, "big")
        root_id = (2 * (request_no * TRACES_PER_REQUEST + t) + 1).to_bytes(8, "big")
        chat_id = (2 * (request_no * TRACES_PER_REQUEST + t) + 2).to_bytes(8, "big")
        spans.append(
            Span(
                trace_id=trace_id,
                span_id=chat_id,
                parent_span_id=root_id,
                name="chat gpt-4o-mini",
                kind=Span.SPAN_KIND_CLIENT,
                start_time_unix_nano=now,
                end_time_unix_nano=now + 1000,
                attributes=[
                    _attr("gen_ai.operation.name", "chat"),
                    _attr("gen_ai.provider.name", "openai"),
                    _attr("gen_ai.request.model", "gpt-4o-mini"),
                    _attr("gen_ai.usage.input_tokens", 100),
                    _attr("gen_ai.usage.output_tokens", 10),
                ],
            )
        )
        spans.append(
            Span(
                trace_id=trace_id,
                span_id=root_id,
                name="invoke_agent crash-agent",
                start_time_unix_nano=now,
                end_time_unix_nano=now + 2000,
                attributes=[_attr("gen_ai.operation.name", "invoke_agent"), _attr("gen_ai.agent.name", "crash")],
            )
        )
        ids.update({(trace_id.hex(), chat_id.hex()), (trace_id.hex(), root_id.hex())})
    request = ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=spans)])],
    )
    return request.SerializeToString(), ids


class AckingClient:
    """Sends requests one after another and records the spans of every acknowledged request."""

    def __init__(self) -> None:
        self.acked: set[tuple[str, str]] = set()
        self.acked_requests = 0
        self.next_request = 0
        self._stop = threading.Event()

    def stream(self, endpoint: str, stop_after: float) -> None:
        deadline = time.monotonic() + stop_after
        with grpc.insecure_channel(endpoint) as channel:
            export = channel.unary_unary(EXPORT, response_deserializer=ExportTraceServiceResponse.FromString)
            while not self._stop.is_set() and time.monotonic() < deadline and self.next_request < MAX_REQUESTS:
                payload, ids = agent_request(self.next_request)
                self.next_request += 1
                try:
                    response = export(payload, timeout=5)
                except grpc.RpcError:
                    return  # the receiver died mid-request: this request was not acknowledged
                assert response.partial_success.rejected_spans == 0
                self.acked |= ids
                self.acked_requests += 1

    def stop(self) -> None:
        self._stop.set()


def _kill_during_stream(receiver: ReceiverProcess, client: AckingClient, acked_before_kill: int) -> None:
    thread = threading.Thread(target=client.stream, args=(receiver.grpc_endpoint, MAX_SECONDS))
    thread.start()
    target = client.acked_requests + acked_before_kill
    deadline = time.monotonic() + MAX_SECONDS
    while client.acked_requests < target and time.monotonic() < deadline and thread.is_alive():
        time.sleep(0.005)
    receiver.kill()  # SIGKILL while the client is still sending
    thread.join(timeout=MAX_SECONDS)
    assert not thread.is_alive()


def test_kill_9_loses_no_acknowledged_span_and_duplicates_none(tmp_path):
    data = tmp_path / "data"
    client = AckingClient()
    flags = ("--parquet-max-seconds", "0.05", "--trace-grace-seconds", "0.02")
    # three crashes at different moments: early, after some Parquet files exist, later still
    for acked_before_kill in (3, 40, 120):
        receiver = ReceiverProcess(data, *flags).start()
        _kill_during_stream(receiver, client, acked_before_kill)
    with ReceiverProcess(data, *flags):
        pass  # restart replays the WAL; SIGTERM writes everything out

    assert client.acked_requests >= 163
    rows = (
        duckdb.connect()
        .sql(f"SELECT lower(hex(trace_id)), lower(hex(span_id)) FROM read_parquet('{data}/spans/*/*.parquet')")
        .fetchall()
    )
    written = set(rows)
    assert len(rows) == len(written), "a span was written twice"
    assert client.acked <= written, f"{len(client.acked - written)} acknowledged spans lost"
    # nothing left behind in the WAL after a clean stop
    assert list((data / "_wal" / "test").glob("*.wal")) == []
