"""Property-based tests of decode + normalize on generated OTLP requests (hypothesis).

Generated spans have ids of random (often wrong) lengths, random times, and attributes drawn from the
dialect keys with values of every type (negative, fractional, non-numeric token counts included).
"""

from __future__ import annotations

import json

import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from collector_ext.decode import otlp_json
from collector_ext.decode.spans import MAX_VALUE_CHARS, TRUNCATION_MARKER, decode_traces
from collector_ext.schema import SPANS

RECEIVED = 1_800_000_000_000_000_000
DIALECT_KEYS = [
    "gen_ai.operation.name",
    "gen_ai.provider.name",
    "gen_ai.system",
    "gen_ai.request.model",
    "gen_ai.response.model",
    "gen_ai.response.id",
    "gen_ai.agent.name",
    "gen_ai.tool.name",
    "gen_ai.conversation.id",
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.output_tokens",
    "gen_ai.usage.prompt_tokens",
    "gen_ai.usage.completion_tokens",
    "gen_ai.usage.cache_read.input_tokens",
    "gen_ai.usage.cache_creation.input_tokens",
    "gen_ai.usage.cache_write.input_tokens",
    "gen_ai.usage.reasoning_tokens",
    "openinference.span.kind",
    "llm.model_name",
    "llm.token_count.prompt",
    "llm.token_count.completion",
    "llm.token_count.total",
    "traceloop.span.kind",
    "llm.request.type",
    "llm.usage.total_tokens",
    "ai.model.id",
    "ai.usage.promptTokens",
    "ai.usage.completionTokens",
    "output.value",
    "custom.key",
]
SPAN_NAMES = ["agent.loop", "gen_ai.chat", "mcp.tool.search", "chat gpt-4o", "ai.generateText.doGenerate", "x"]

text = st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=20)
scalar = st.one_of(
    text.map(lambda v: AnyValue(string_value=v)),
    st.sampled_from(["12", "-4", "1.5", "many", "", "1e3"]).map(lambda v: AnyValue(string_value=v)),
    st.integers(min_value=-(2**63), max_value=2**63 - 1).map(lambda v: AnyValue(int_value=v)),
    st.floats(allow_nan=False, allow_infinity=False).map(lambda v: AnyValue(double_value=v)),
    st.booleans().map(lambda v: AnyValue(bool_value=v)),
    st.binary(max_size=8).map(lambda v: AnyValue(bytes_value=v)),
)
value = st.one_of(scalar, st.lists(scalar, max_size=3).map(lambda vs: AnyValue(array_value=ArrayValue(values=vs))))
attributes = st.lists(st.builds(KeyValue, key=st.one_of(st.sampled_from(DIALECT_KEYS), text), value=value), max_size=8)


def ident(good: int, wrong: list[int]) -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.binary(min_size=good, max_size=good),
        st.just(bytes(good)),
        st.sampled_from(wrong).flatmap(lambda n: st.binary(min_size=n, max_size=n)),
    )


trace_ids = ident(16, [0, 1, 8, 15, 17, 32])
span_ids = ident(8, [0, 4, 7, 9, 16])
times = st.one_of(st.just(0), st.integers(min_value=1, max_value=2**64 - 1))
links = st.lists(st.builds(Span.Link, trace_id=trace_ids, span_id=span_ids, attributes=attributes), max_size=2)
spans = st.builds(
    Span,
    trace_id=trace_ids,
    span_id=span_ids,
    parent_span_id=st.one_of(st.just(b""), span_ids),
    name=st.one_of(st.sampled_from(SPAN_NAMES), text),
    kind=st.integers(min_value=0, max_value=6),
    start_time_unix_nano=times,
    end_time_unix_nano=times,
    attributes=attributes,
    links=links,
)
requests = st.lists(
    st.builds(
        ResourceSpans,
        resource=st.builds(Resource, attributes=attributes),
        scope_spans=st.lists(st.builds(ScopeSpans, spans=st.lists(spans, max_size=6)), max_size=2),
    ),
    max_size=3,
).map(lambda rs: ExportTraceServiceRequest(resource_spans=rs))


def ids_and_times_valid(span: Span) -> bool:
    def ok(raw: bytes, size: int) -> bool:
        return len(raw) == size and raw != bytes(size)

    return (
        ok(span.trace_id, 16)
        and ok(span.span_id, 8)
        and (span.parent_span_id == b"" or len(span.parent_span_id) == 8)
        and 0 < span.start_time_unix_nano <= span.end_time_unix_nano
        and all(ok(link.trace_id, 16) and ok(link.span_id, 8) for link in span.links)
    )


def all_spans(request: ExportTraceServiceRequest) -> list[Span]:
    return [s for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans]


MAX_STORED = MAX_VALUE_CHARS + len(TRUNCATION_MARKER) + 20


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(requests)
def test_decode_never_raises_and_accounts_for_every_span(request: ExportTraceServiceRequest) -> None:
    result = decode_traces(request, RECEIVED)
    generated = all_spans(request)
    assert len(result.spans) + result.rejected == len(generated)
    assert len(result.errors) == result.rejected
    # each message names the position of its span; every span with bad ids or times is among them
    rejected_at = {int(message.split(" ", 2)[1]) for message in result.errors}
    assert len(rejected_at) == result.rejected
    assert {i for i, span in enumerate(generated) if not ids_and_times_valid(span)} <= rejected_at
    kept = [span for i, span in enumerate(generated) if i not in rejected_at]
    assert [(row["trace_id"], row["span_id"]) for row in result.spans] == [(s.trace_id, s.span_id) for s in kept]
    for row in result.spans:
        assert len(row["trace_id"]) == 16 and row["trace_id"] != bytes(16)
        assert len(row["span_id"]) == 8 and row["span_id"] != bytes(8)
        assert row["parent_span_id"] is None or len(row["parent_span_id"]) == 8
        assert 0 < row["start_time"] <= row["end_time"]
        for column in ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens"):
            assert row[column] is None or (type(row[column]) is int and 0 <= row[column] < 2**63)
        for mapping in (row["attributes"], row["resource_attributes"]):
            assert all(type(k) is str and type(v) is str and len(v) <= MAX_STORED for k, v in mapping.items())
    # every accepted row fits the dataset schema
    table = pa.Table.from_pylist(result.spans, schema=SPANS)
    assert table.num_rows == len(result.spans)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(requests)
def test_json_round_trip_equals_the_protobuf_path(request: ExportTraceServiceRequest) -> None:
    body = json.dumps(otlp_json.to_json_dict(request))
    again = otlp_json.parse_trace_request(body)
    assert again == request
    assert decode_traces(again, RECEIVED) == decode_traces(request, RECEIVED)
