"""decode_traces and otlp_json on real corpus requests and on hand-built bad spans."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import CORPUS
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

from collector_ext.decode import otlp_json
from collector_ext.decode.spans import MAX_VALUE_CHARS, SCOPE_NAME_KEY, decode_traces
from collector_ext.schema import SPANS

CORPUS_FILES = sorted(CORPUS.glob("*.pb"))
RECEIVED = 1_800_000_000_000_000_000
TRACE = bytes.fromhex("0af7651916cd43dd8448eb211c80319c")


def kv(key: str, value: object) -> KeyValue:
    if isinstance(value, bool):
        return KeyValue(key=key, value=AnyValue(bool_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    if isinstance(value, float):
        return KeyValue(key=key, value=AnyValue(double_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=str(value)))


def span(n: int, **fields) -> Span:
    base = dict(
        trace_id=TRACE,
        span_id=(n + 1).to_bytes(8, "big"),
        name=f"span-{n}",
        kind=Span.SPAN_KIND_CLIENT,
        start_time_unix_nano=1_700_000_000_000_000_000 + n,
        end_time_unix_nano=1_700_000_000_500_000_000 + n,
    )
    base.update(fields)
    return Span(**base)


def request_of(*spans: Span, resource: dict | None = None) -> ExportTraceServiceRequest:
    resource = resource if resource is not None else {"service.name": "svc"}
    return ExportTraceServiceRequest(
        resource_spans=[
            ResourceSpans(
                resource=Resource(attributes=[kv(k, v) for k, v in resource.items()]),
                scope_spans=[ScopeSpans(scope=InstrumentationScope(name="my.lib", version="1.2"), spans=list(spans))],
            )
        ]
    )


@pytest.mark.parametrize("path", CORPUS_FILES, ids=lambda p: p.stem)
def test_corpus_request_decodes_whole_and_json_equals_protobuf(path: Path) -> None:
    request = ExportTraceServiceRequest.FromString(path.read_bytes())
    total = sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
    result = decode_traces(request, RECEIVED)
    assert (len(result.spans), result.rejected, result.errors) == (total, 0, [])
    for row in result.spans:
        assert len(row["trace_id"]) == 16 and len(row["span_id"]) == 8
        assert row["service_name"] == "genai-span-corpus"
        assert row["resource_attributes"]["corpus.file"] == path.stem
        assert row["received_time"] == RECEIVED
        assert set(SPANS.names) <= set(row)
        assert row["agent_span_id"] is None and row["task_id"] is None and row["usage_counted"] is None
    # the OTLP/JSON twin of the capture parses to the identical message (hex ids, int64 strings)
    from_json = otlp_json.parse_trace_request(path.with_suffix(".json").read_bytes())
    assert from_json == request
    # decoding is deterministic (the WAL replay relies on it)
    assert decode_traces(request, RECEIVED).spans == result.spans


def test_span_columns() -> None:
    parent = (99).to_bytes(8, "big")
    link_trace = bytes.fromhex("11" * 16)
    s = span(
        0,
        parent_span_id=parent,
        status=Status(code=Status.STATUS_CODE_ERROR, message="boom"),
        attributes=[
            kv("gen_ai.operation.name", "chat"),
            kv("gen_ai.request.model", "gpt-4o"),
            kv("gen_ai.usage.input_tokens", 120),
            kv("gen_ai.usage.output_tokens", 30),
            kv("http.status_code", 500),
            kv("flag", True),
        ],
        links=[Span.Link(trace_id=link_trace, span_id=parent, attributes=[kv("kind", "delegate")])],
    )
    resource = {
        "service.name": "orchestrator",
        "k8s.namespace.name": "agents",
        "k8s.pod.name": "orch-0",
        "k8s.node.name": "node-a",
        "k8s.container.name": "main",
    }
    result = decode_traces(request_of(s, span(1), resource=resource), RECEIVED)
    assert result.rejected == 0
    row, root = result.spans
    assert row["trace_id"] == TRACE and row["span_id"] == (1).to_bytes(8, "big") and row["parent_span_id"] == parent
    assert root["parent_span_id"] is None
    assert (row["name"], row["span_kind"], row["status_code"], row["status_message"]) == (
        "span-0",
        "client",
        "error",
        "boom",
    )
    assert (row["start_time"], row["end_time"]) == (1_700_000_000_000_000_000, 1_700_000_000_500_000_000)
    assert (row["service_name"], row["k8s_namespace"], row["k8s_pod"], row["k8s_node"], row["k8s_container"]) == (
        "orchestrator",
        "agents",
        "orch-0",
        "node-a",
        "main",
    )
    assert row["resource_attributes"] == resource
    assert (row["category"], row["request_model"], row["input_tokens"], row["output_tokens"]) == (
        "llm",
        "gpt-4o",
        120,
        30,
    )
    # consumed keys moved to typed columns; the rest stay, stringified, with the scope
    assert row["attributes"] == {
        "http.status_code": "500",
        "flag": "true",
        SCOPE_NAME_KEY: "my.lib",
        "otel.scope.version": "1.2",
    }
    assert row["links"] == [{"trace_id": link_trace, "span_id": parent, "attributes": {"kind": "delegate"}}]


BAD_SPANS = [
    (dict(trace_id=b"\x01" * 5), "trace_id is 5 bytes, want 16"),
    (dict(trace_id=bytes(16)), "trace_id is all zero"),
    (dict(span_id=b"\x01" * 4), "span_id is 4 bytes, want 8"),
    (dict(span_id=bytes(8)), "span_id is all zero"),
    (dict(parent_span_id=b"\x01" * 3), "parent_span_id is 3 bytes, want 8 or empty"),
    (dict(start_time_unix_nano=0, end_time_unix_nano=5), "start_time is zero"),
    (dict(start_time_unix_nano=10, end_time_unix_nano=9), "end_time before start_time (9 < 10)"),
    (
        dict(start_time_unix_nano=10, end_time_unix_nano=2**63),  # a uint64 in OTLP; the dataset's times are int64
        f"end_time {2**63} is past the largest timestamp ({2**63 - 1} ns)",
    ),
    (dict(links=[Span.Link(trace_id=b"\x02" * 15, span_id=b"\x01" * 8)]), "link 0 trace_id is 15 bytes or zero"),
    (dict(links=[Span.Link(trace_id=b"\x02" * 16, span_id=b"")]), "link 0 span_id is 0 bytes or zero"),
    (dict(attributes=[kv("gen_ai.usage.input_tokens", -3)]), "-3"),
    (dict(attributes=[kv("gen_ai.usage.output_tokens", "many")]), "many"),
]


def test_each_bad_span_rejected_with_its_reason_rest_kept() -> None:
    spans = [span(0)] + [span(i + 1, **fields) for i, (fields, _) in enumerate(BAD_SPANS)] + [span(99)]
    result = decode_traces(request_of(*spans), RECEIVED)
    assert result.rejected == len(BAD_SPANS)
    assert [row["name"] for row in result.spans] == ["span-0", "span-99"]
    assert len(result.errors) == len(BAD_SPANS)
    for i, (message, (_, reason)) in enumerate(zip(result.errors, BAD_SPANS, strict=True)):
        assert message.startswith(f"span {i + 1} (trace "), message
        assert reason in message, (reason, message)


def test_token_reasons_name_the_attribute() -> None:
    result = decode_traces(request_of(span(0, attributes=[kv("gen_ai.usage.input_tokens", -3)])), RECEIVED)
    assert result.rejected == 1 and "gen_ai.usage.input_tokens" in result.errors[0]


def test_huge_attribute_values_are_capped() -> None:
    huge = "x" * (MAX_VALUE_CHARS * 3)
    s = span(0, attributes=[kv("gen_ai.prompt", huge), kv("small", "ok")], name="n" * (MAX_VALUE_CHARS + 10))
    result = decode_traces(request_of(s, resource={"service.name": "svc", "big": huge}), RECEIVED)
    (row,) = result.spans
    value = row["attributes"]["gen_ai.prompt"]
    assert value == "x" * MAX_VALUE_CHARS + f"...[truncated by agentmeter; original length {len(huge)} chars]"
    assert row["attributes"]["small"] == "ok"
    assert len(row["resource_attributes"]["big"]) == len(value)
    name_marker = f"...[truncated by agentmeter; original length {MAX_VALUE_CHARS + 10} chars]"
    assert row["name"] == "n" * MAX_VALUE_CHARS + name_marker


def test_empty_request_and_empty_containers() -> None:
    assert decode_traces(ExportTraceServiceRequest(), RECEIVED).total == 0
    empty = ExportTraceServiceRequest(resource_spans=[ResourceSpans(scope_spans=[ScopeSpans()])])
    result = decode_traces(empty, RECEIVED)
    assert (result.spans, result.rejected, result.errors) == ([], 0, [])


def test_unknown_enum_values_fall_back() -> None:
    (row,) = decode_traces(request_of(span(0, kind=42, status=Status(code=7))), RECEIVED).spans
    assert (row["span_kind"], row["status_code"]) == ("unspecified", "unset")


def test_non_utf8_string_makes_the_whole_request_malformed() -> None:
    """upb refuses invalid UTF-8 in a proto3 `string` field at parse time: the request is malformed."""
    good = request_of(span(0, name="AAAA")).SerializeToString()
    bad = good.replace(b"AAAA", b"A\xff\xfeA")
    assert len(bad) == len(good) and bad != good
    with pytest.raises(DecodeError):
        ExportTraceServiceRequest.FromString(bad)


def test_json_hex_ids_snake_case_int64_numbers_and_enum_ints() -> None:
    document = {
        "resource_spans": [
            {
                "scope_spans": [
                    {
                        "spans": [
                            {
                                "trace_id": TRACE.hex(),
                                "span_id": "00000000000000ff",
                                "parentSpanId": "0000000000000001",
                                "name": "x",
                                "kind": 2,
                                "start_time_unix_nano": 5,
                                "endTimeUnixNano": "7",
                                "links": [{"traceId": "22" * 16, "spanId": "33" * 8}],
                                "someFutureField": {"a": 1},
                            }
                        ]
                    }
                ]
            }
        ]
    }
    import json

    request = otlp_json.parse_trace_request(json.dumps(document))
    s = request.resource_spans[0].scope_spans[0].spans[0]
    assert (s.trace_id, s.span_id, s.parent_span_id) == (
        TRACE,
        bytes.fromhex("00000000000000ff"),
        (1).to_bytes(8, "big"),
    )
    assert (s.kind, s.start_time_unix_nano, s.end_time_unix_nano) == (Span.SPAN_KIND_SERVER, 5, 7)
    assert (s.links[0].trace_id, s.links[0].span_id) == (b"\x22" * 16, b"\x33" * 8)
    # and back: hex ids, lowerCamelCase
    back = otlp_json.to_json_dict(request)
    assert back["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["traceId"] == TRACE.hex()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "body is not JSON"),
        (b"[1, 2]", "body is not a JSON object"),
        (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz"}]}]}]}', "is not a hex string"),
        (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"startTimeUnixNano": "soon"}]}]}]}', "not a valid"),
    ],
)
def test_bad_json_is_a_clear_error(body: bytes, message: str) -> None:
    with pytest.raises(otlp_json.OtlpJsonError, match=message):
        otlp_json.parse_trace_request(body)
