"""Decode limits (decode/limits.py): sizes, counts and the time window bounded by configuration, one bad value
rejecting one span with a typed reason, and resource maps held once per resource."""

from __future__ import annotations

import hashlib

import pyarrow as pa
import pytest
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from test_decode import RECEIVED, TRACE, kv, request_of, span

from collector_ext.config import ReceiverConfig
from collector_ext.decode.batch import Encoding, decode_request
from collector_ext.decode.limits import DecodeLimits
from collector_ext.decode.otlp_json import to_json_dict
from collector_ext.decode.rejections import RejectReason
from collector_ext.decode.spans import decode_traces

HOUR_NS = 3600 * 1_000_000_000
WINDOWED = DecodeLimits(span_max_age_ns=168 * HOUR_NS, span_max_future_ns=HOUR_NS)


def at(n: int, start: int, **fields) -> Span:
    return span(n, start_time_unix_nano=start, end_time_unix_nano=start + 1_000, **fields)


def test_a_5000_digit_token_count_rejects_its_span_and_keeps_the_nine_others() -> None:
    spans = [span(n, attributes=[kv("gen_ai.usage.input_tokens", 10 + n)]) for n in range(10)]
    spans[4] = span(4, attributes=[kv("gen_ai.usage.input_tokens", "9" * 5000)])
    result = decode_traces(request_of(*spans), RECEIVED)
    assert [row["input_tokens"] for row in result.spans] == [10, 11, 12, 13, 15, 16, 17, 18, 19]
    (rejection,) = result.rejections
    assert rejection.reason is RejectReason.USAGE
    assert rejection.message.startswith("span 4 ") and "token count is out of range" in rejection.message
    # leading zeros are still a small number
    (row,) = decode_traces(request_of(span(0, attributes=[kv("gen_ai.usage.input_tokens", "0" * 30 + "7")])), 0).spans
    assert row["input_tokens"] == 7


def test_any_value_the_decoder_cannot_take_rejects_its_span_alone(monkeypatch) -> None:
    from collector_ext.decode import spans as spans_module

    real = spans_module.normalize_into

    def trips_on_one(row, name, kind, attributes):
        if name == "bad":
            raise OverflowError("a value no rule expected")
        return real(row, name, kind, attributes)

    monkeypatch.setattr(spans_module, "normalize_into", trips_on_one)
    result = decode_traces(request_of(span(0), span(1, name="bad"), span(2)), RECEIVED)
    assert [row["name"] for row in result.spans] == ["span-0", "span-2"]
    (rejection,) = result.rejections
    assert rejection.reason is RejectReason.INVALID_VALUE
    assert "OverflowError: a value no rule expected" in rejection.message


def test_every_rejection_has_its_own_reason() -> None:
    from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan

    bad_link = PbSpan.Link(trace_id=TRACE, span_id=b"\x01")
    spans = [
        span(0, trace_id=b"\x01" * 5),
        span(1, span_id=bytes(8)),
        span(2, parent_span_id=b"\x07" * 3),
        span(3, links=[bad_link]),
        span(4, start_time_unix_nano=0),
        span(5, end_time_unix_nano=1),
        span(6, attributes=[kv("gen_ai.usage.output_tokens", -1)]),
        span(7, attributes=[kv("gen_ai.usage.cost", "free")]),
        span(8),
    ]
    result = decode_traces(request_of(*spans), RECEIVED)
    assert [r.reason for r in result.rejections] == [
        RejectReason.TRACE_ID,
        RejectReason.SPAN_ID,
        RejectReason.PARENT_SPAN_ID,  # once counted as "span_id" (a substring match)
        RejectReason.LINK,  # once counted as "trace_id" or "span_id"
        RejectReason.START_TIME,
        RejectReason.END_TIME,
        RejectReason.USAGE,
        RejectReason.USAGE,
    ]
    assert [row["name"] for row in result.spans] == ["span-8"]


def test_spans_outside_the_time_window_are_rejected_one_by_one() -> None:
    spans = [
        at(0, RECEIVED),
        at(1, RECEIVED - 167 * HOUR_NS),  # 7 days minus an hour: kept
        at(2, RECEIVED - 169 * HOUR_NS),  # older than 7 days
        at(3, RECEIVED + HOUR_NS // 2),  # half an hour ahead (clock skew): kept
        at(4, RECEIVED + 2 * HOUR_NS),
    ]
    result = decode_traces(request_of(*spans), RECEIVED, WINDOWED)
    assert [row["name"] for row in result.spans] == ["span-0", "span-1", "span-3"]
    assert [r.reason for r in result.rejections] == [RejectReason.TIME_WINDOW] * 2
    assert "more than 168 h before its receipt" in result.rejections[0].message
    assert "more than 60 min after its receipt" in result.rejections[1].message
    # no window (the library default, or 0 in the configuration): everything with valid times is kept
    assert decode_traces(request_of(*spans), RECEIVED).rejected == 0


def test_one_client_cannot_create_thousands_of_date_partitions() -> None:
    day_ns = 24 * HOUR_NS
    spans = [at(n, RECEIVED - n * day_ns) for n in range(2_000)]  # 2,000 distinct start dates
    decoded = decode_request(request_of(*spans).SerializeToString(), RECEIVED, WINDOWED)
    dates = decoded.table.column("start_time").cast(pa.date32()).unique()
    assert decoded.accepted == 8 and len(dates) <= 9  # the window's days only (exactly 7 days old is in)
    assert decoded.rejected == 1_992


def test_limits_come_from_the_configuration() -> None:
    config = ReceiverConfig(
        writer_id="w",
        max_attribute_value_chars=100,
        max_id_chars=40,
        max_attributes=5,
        max_links=2,
        span_max_age_hours=1,
        span_max_future_minutes=0,
    )
    assert DecodeLimits.from_config(config) == DecodeLimits(
        max_attribute_value_chars=100,
        max_id_chars=40,
        max_attributes=5,
        max_links=2,
        span_max_age_ns=HOUR_NS,
        span_max_future_ns=None,
    )


def test_long_ids_are_shortened_with_a_digest_and_stay_distinct() -> None:
    limits = DecodeLimits(max_id_chars=32)
    first, second = "resp-" + "a" * 4_000_000 + "1", "resp-" + "a" * 4_000_000 + "2"  # 4 MB response ids
    spans = [
        span(n, name="chat", attributes=[kv("gen_ai.operation.name", "chat"), kv("gen_ai.response.id", rid)])
        for n, rid in enumerate((first, second))
    ]
    rows = decode_traces(request_of(*spans), RECEIVED, limits).spans
    ids = [row["response_id"] for row in rows]
    for rid, shortened in zip((first, second), ids, strict=True):
        digest = hashlib.sha256(rid.encode()).hexdigest()[:16]
        assert (
            shortened == rid[:32] + f"...[truncated by agentmeter; original length {len(rid)} chars; sha256 {digest}]"
        )
    assert ids[0] != ids[1]


def test_attribute_counts_keys_links_and_resources_are_capped() -> None:
    from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan

    limits = DecodeLimits(max_attribute_value_chars=64, max_id_chars=32, max_attributes=4, max_links=2)
    links = [PbSpan.Link(trace_id=TRACE, span_id=(100 + i).to_bytes(8, "big")) for i in range(5)]
    attributes = [kv(f"k{i}", "v") for i in range(10)] + [kv("long-" + "k" * 100, "x" * 1000)]
    resource = {"service.name": "s" * 100, **{f"r{i}": "v" * 100 for i in range(10)}}
    (row,) = decode_traces(request_of(span(0, attributes=attributes, links=links), resource=resource), 0, limits).spans
    assert list(row["attributes"])[:5] == ["k0", "k1", "k2", "k3", "agentmeter.dropped_attributes_count"]
    assert row["attributes"]["agentmeter.dropped_attributes_count"] == "7"
    assert row["attributes"]["agentmeter.dropped_links_count"] == "3"
    assert [link["span_id"] for link in row["links"]] == [(100).to_bytes(8, "big"), (101).to_bytes(8, "big")]
    resource_map = row["resource_attributes"]
    assert len(resource_map) == 5 and resource_map["agentmeter.dropped_attributes_count"] == "7"
    assert resource_map["r0"] == "v" * 64 + "...[truncated by agentmeter; original length 100 chars]"
    assert row["service_name"].startswith("s" * 32 + "...[truncated by agentmeter; original length 100 chars;")
    long_key = "long-" + "k" * 100
    decoded = decode_traces(request_of(span(0, attributes=[kv(long_key, "v")])), 0, limits).spans[0]["attributes"]
    (key,) = [k for k in decoded if k.startswith("long-")]
    assert key.startswith(long_key[:32] + "...[truncated by agentmeter; original length 105 chars; sha256 ")


def test_a_resource_is_held_once_whatever_the_number_of_its_spans() -> None:
    # the case: one ~0.9 MB request with large resource values; each row used to carry a copy
    resource = {"service.name": "svc", **{f"big.{i}": "x" * 60_000 for i in range(8)}}
    spans = [span(n) for n in range(1_000)]
    payload = request_of(*spans, resource=resource).SerializeToString()
    assert len(payload) < 600_000
    table = decode_request(payload, RECEIVED).table
    column = table.column("resource_attributes")
    assert pa.types.is_dictionary(column.type) and len(column.chunk(0).dictionary) == 1
    assert table.num_rows == 1_000
    assert table.nbytes < 2 * 1024 * 1024  # copied per row it was ~480 MB
    assert column[999].as_py() == list(resource.items())


def test_json_is_decoded_where_protobuf_is_and_keeps_protobuf_for_the_wal() -> None:
    request = request_of(span(0, attributes=[kv("gen_ai.usage.input_tokens", 5)]), span(1, trace_id=b"x"))
    import json

    body = json.dumps(to_json_dict(request)).encode()
    from_json = decode_request(body, RECEIVED, encoding=Encoding.JSON)
    from_protobuf = decode_request(request.SerializeToString(), RECEIVED)
    assert from_json.table.equals(from_protobuf.table)
    assert from_json.rejections == from_protobuf.rejections
    assert from_json.protobuf == request.SerializeToString()  # what the WAL keeps and the replay decodes
    assert from_protobuf.protobuf is None


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        (b'{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"zz"}]}]}]}', "$.resourceSpans[0]", "not a hex"),
        (b"[" * 100_000 + b"]" * 100_000, "body", "nested too deeply"),
        (b'{"resourceSpans":' + b"[" * 50_000 + b"]" * 50_000 + b"}", "body", "nested too deeply"),
        (b"\xff\xfe", "body", "body is not JSON"),
    ],
)
def test_malformed_json_names_where_and_never_crashes(body: bytes, field: str, message: str) -> None:
    decoded = decode_request(body, RECEIVED, encoding=Encoding.JSON)
    assert decoded.table is None and message in decoded.malformed
    assert decoded.malformed_field.startswith(field)
