"""The ingest hot path's leaner rows: repeated values are shared objects, and the trace buffer's per-run lookup
keeps the same order and counts as a lookup per span."""

from __future__ import annotations

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from collector_ext.decode.otlp_values import attribute_map
from collector_ext.decode.spans import decode_traces
from collector_ext.traces.span_refs import SpanRef
from collector_ext.traces.trace_buffer import TraceBuffer

TRACE_A = bytes.fromhex("0af7651916cd43dd8448eb211c80319c")
TRACE_B = bytes.fromhex("4bf92f3577b34da6a3ce929d0e0e4736")


def kv(key: str, value: object) -> KeyValue:
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=value))


def llm_span(trace: bytes, n: int, parent: int | None) -> Span:
    return Span(
        trace_id=trace,
        span_id=n.to_bytes(8, "big"),
        parent_span_id=parent.to_bytes(8, "big") if parent else b"",
        name="chat gpt-4o",
        start_time_unix_nano=1_700_000_000_000_000_000 + n,
        end_time_unix_nano=1_700_000_000_500_000_000 + n,
        attributes=[
            kv("gen_ai.operation.name", "chat"),
            kv("gen_ai.request.model", "gpt-4o"),
            kv("gen_ai.response.model", "gpt-4o-2024-08-06"),
            kv("gen_ai.usage.input_tokens", 100 + n),
            kv("server.port", 443),
            kv("server.address", "api.openai.com"),
        ],
    )


def request_of(spans: list[Span]) -> ExportTraceServiceRequest:
    resource = Resource(attributes=[kv("service.name", "svc")])
    return ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(resource=resource, scope_spans=[ScopeSpans(spans=spans)])]
    )


def test_rows_share_ids_names_and_keys_but_not_values_that_differ() -> None:
    # a root (1) and two children (2, 3) of trace A, in one request, decoded twice (two requests' worth)
    spans = [llm_span(TRACE_A, 2, 1), llm_span(TRACE_A, 3, 1), llm_span(TRACE_A, 1, None)]
    first, second, root = decode_traces(request_of(spans), 1).spans
    again = decode_traces(request_of(spans), 2).spans[0]
    # ids: one object per distinct id within a request
    assert first["trace_id"] is second["trace_id"] is root["trace_id"] == TRACE_A
    assert first["parent_span_id"] is second["parent_span_id"] is root["span_id"] == (1).to_bytes(8, "big")
    # names and model names: one object across requests
    for column in ("name", "operation", "request_model", "response_model"):
        assert first[column] is second[column] is again[column], column
    assert (first["request_model"], first["response_model"], first["operation"]) == (
        "gpt-4o",
        "gpt-4o-2024-08-06",
        "chat",
    )
    # attribute keys and small int texts shared; the rest exactly as before
    assert first["attributes"] == {"server.port": "443", "server.address": "api.openai.com"}
    assert list(first["attributes"]) == list(again["attributes"])
    assert all(a is b for a, b in zip(first["attributes"], again["attributes"], strict=True))
    assert first["attributes"]["server.port"] is again["attributes"]["server.port"]
    assert (first["input_tokens"], second["input_tokens"], root["input_tokens"]) == (102, 103, 101)
    # rows without links hold an empty list (equal to a fresh one)
    assert first["links"] == [] and root["links"] == []


def test_int_texts_are_the_same_as_repr_at_every_size() -> None:
    values = {"a": 0, "b": 1023, "c": 1024, "d": -1, "e": 2**63 - 1, "f": True}
    assert attribute_map(values) == {"a": "0", "b": "1023", "c": "1024", "d": "-1", "e": str(2**63 - 1), "f": "true"}


def row(trace: bytes, span_id: int, parent: int | None) -> SpanRef:
    return SpanRef(
        trace_id=trace, span_id=span_id.to_bytes(8, "big"), parent_span_id=parent.to_bytes(8, "big") if parent else None
    )


def test_trace_buffer_orders_by_last_activity_across_interleaved_runs() -> None:
    buffer = TraceBuffer(grace_seconds=5, max_wait_seconds=100, max_spans=100)
    buffer.add([row(TRACE_A, 2, 1), row(TRACE_B, 7, 6), row(TRACE_A, 3, 1)], now=0)
    assert buffer.trace_ids() == [TRACE_B, TRACE_A]  # A was active last
    assert (buffer.span_count, buffer.trace_count) == (3, 2)
    # a re-sent span replaces the held one and is not counted twice; B becomes the most recent
    buffer.add([row(TRACE_A, 3, 1), row(TRACE_B, 6, None), row(TRACE_B, 7, 6)], now=1)
    assert buffer.trace_ids() == [TRACE_A, TRACE_B]
    assert buffer.span_count == 4
    # B has its root and is quiet at 6; A has none: only B leaves, with both its spans
    (ready,) = buffer.take_ready(now=6)
    assert (ready.trace_id, sorted(s.span_id for s in ready.spans), ready.state) == (
        TRACE_B,
        [(6).to_bytes(8, "big"), (7).to_bytes(8, "big")],
        None,
    )
    assert (buffer.span_count, buffer.trace_ids()) == (2, [TRACE_A])
