"""OTLP `ExportTraceServiceRequest` -> span rows (dicts keyed by `schema.SPANS` column names).

Each span is validated on its own; a bad span is rejected with one message naming the reason and the rest
of the batch is kept (OTLP partial success). Decoding is deterministic: the same request and received time
give the same rows, which the WAL replay relies on.

Non-UTF-8 text never reaches this module: protobuf (upb) refuses invalid UTF-8 in `string` fields when
the request is parsed, so such a request is malformed as a whole (gRPC INVALID_ARGUMENT / HTTP 400).

Sizes are bounded by `DecodeLimits` (limits.py: attribute values and names truncated with a marker, ids and
names in typed columns shortened with a digest, attribute and link counts capped, spans outside the time
window around receipt rejected), so memory follows the receiver's configuration, not its clients. One bad
value rejects its span alone, with a typed reason (rejections.py), never the request.

Not kept (the dataset has no column for them): span events, trace_state, flags and the dropped-counts.
The instrumentation scope's name and version are kept in the attributes map (`otel.scope.name`/`.version`).

This is the ingest hot path (see bench/bench_ingest.py): one pass per span, no per-span allocation that
is not needed, row dicts copied from a template (normalize writes its columns straight into the row).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from sys import intern

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from collector_ext.decode.dialects import InvalidSpan, normalize_into
from collector_ext.decode.limits import (
    DEFAULT_LIMITS,
    DROPPED_ATTRIBUTES_KEY,
    DROPPED_LINKS_KEY,
    TRUNCATION_MARKER,  # noqa: F401 (re-exported: tests and docs name it here)
    DecodeLimits,
)
from collector_ext.decode.otlp_values import any_value_to_python, attribute_map, attributes_to_dict
from collector_ext.decode.rejections import Rejection, RejectReason
from collector_ext.schema import SPAN_KINDS, SPANS, STATUS_CODES

MAX_VALUE_CHARS = DEFAULT_LIMITS.max_attribute_value_chars
# Typed text columns that come from client values (the rest come from fixed vocabularies): capped at max_id_chars.
_SPAN_TEXT_COLUMNS = (
    "operation",
    "provider",
    "request_model",
    "response_model",
    "response_id",
    "tool_name",
    "conversation_id",
    "agent_name",
    "agent_id",
)
_RESOURCE_TEXT_COLUMNS = ("service_name", "k8s_namespace", "k8s_pod", "k8s_node", "k8s_container")

# Scope name/version are kept in the attributes map under these keys (as OTel's Zipkin/Jaeger mappings do).
SCOPE_NAME_KEY = "otel.scope.name"
SCOPE_VERSION_KEY = "otel.scope.version"

_ROW_TEMPLATE: dict[str, object] = dict.fromkeys(SPANS.names)
# Shared by every row without links (most): consumers must not mutate a row's links.
_NO_LINKS: list[dict] = []
# Span names (low cardinality by the OTel spec) are interned, as dialects.py interns model, agent and tool
# names: the trace buffer then holds each distinct name once rather than once per span. A longer name is
# left alone (interning a unique string only costs).
_INTERN_MAX_CHARS = 256
_ZERO_TRACE_ID = bytes(16)
_ZERO_SPAN_ID = bytes(8)
_MAX_TIME_NS = 2**63 - 1


@dataclass
class DecodeResult:
    spans: list[dict] = field(default_factory=list)  # accepted rows
    rejections: list[Rejection] = field(default_factory=list)  # one per rejected span, in request order

    @property
    def rejected(self) -> int:
        return len(self.rejections)

    @property
    def errors(self) -> list[str]:
        """The rejections' messages (partial_success.error_message)."""
        return [rejection.message for rejection in self.rejections]

    @property
    def total(self) -> int:
        return len(self.spans) + self.rejected


def _span_attributes(kvs) -> dict[str, object]:
    """attributes_to_dict with a fast path for non-empty strings (most GenAI attributes): reading
    `string_value` first skips the WhichOneof dispatch; ints are read inline; anything else goes through
    otlp_values.

    Keys are interned: protobuf hands out a new str per access, and the few distinct keys would otherwise be
    held once per span in the trace buffer (~450 B per held span); interned keys also hash and compare
    faster in the lookups that follow (dialect rules, consumed keys)."""
    out: dict[str, object] = {}
    for kv in kvs:
        value = kv.value
        text = value.string_value
        if text:
            out[intern(kv.key)] = text
        elif value.WhichOneof("value") == "int_value":  # the next most common (token counts, ports)
            out[intern(kv.key)] = value.int_value
        else:
            out[intern(kv.key)] = any_value_to_python(value)
    return out


def _cap(values: dict[str, str], limits: DecodeLimits) -> dict[str, str]:
    """Cap a map of strings: over-long values and keys (rare: one pass of len()), then the attribute count."""
    max_value = limits.max_attribute_value_chars
    max_key = limits.max_id_chars
    long_keys = []
    for key, text in values.items():
        if len(text) > max_value:
            values[key] = limits.truncate_value(text)
        if len(key) > max_key:
            long_keys.append(key)
    for key in long_keys:
        values[limits.shorten_id(key)] = values.pop(key)
    if len(values) > limits.max_attributes:
        dropped = len(values) - limits.max_attributes
        values = dict(list(values.items())[: limits.max_attributes])
        values[DROPPED_ATTRIBUTES_KEY] = str(dropped)
    return values


def _attribute_map(
    attrs: dict[str, object], consumed: frozenset[str], limits: DecodeLimits
) -> tuple[dict[str, str], bool]:
    """The `attributes` column: the span's attributes not moved into typed columns, as capped strings; and
    whether any string value is longer than max_id_chars (only then can a typed column need shortening).
    Strings (most values) are handled inline; the rest are stringified by otlp_values.attribute_map."""
    out: dict[str, str] = {}
    others: dict[str, object] = {}
    max_value = limits.max_attribute_value_chars
    max_key = limits.max_id_chars
    long_text = False
    capped = False
    for key, value in attrs.items():
        if type(value) is str:
            size = len(value)
            if size > max_key:
                long_text = True
            if key in consumed:
                continue
            out[key] = value if size <= max_value else limits.truncate_value(value)
        elif key not in consumed:
            others[key] = value
        else:
            continue
        if len(key) > max_key:
            capped = True
    if others:
        stringified = attribute_map(others)
        out.update(stringified)
        capped = capped or any(len(text) > max_value for text in stringified.values())
    if capped or len(out) > limits.max_attributes:
        out = _cap(out, limits)
    return out, long_text


def _text_columns(row: dict, columns: tuple[str, ...], limits: DecodeLimits) -> None:
    max_chars = limits.max_id_chars
    for column in columns:
        text = row[column]
        if text is not None and len(text) > max_chars:
            row[column] = limits.shorten_id(text)


def _id_problem(trace_id: bytes, span_id: bytes, parent_span_id: bytes) -> tuple[RejectReason, str] | None:
    if len(trace_id) != 16:
        return RejectReason.TRACE_ID, f"trace_id is {len(trace_id)} bytes, want 16"
    if trace_id == _ZERO_TRACE_ID:
        return RejectReason.TRACE_ID, "trace_id is all zero"
    if len(span_id) != 8:
        return RejectReason.SPAN_ID, f"span_id is {len(span_id)} bytes, want 8"
    if span_id == _ZERO_SPAN_ID:
        return RejectReason.SPAN_ID, "span_id is all zero"
    if parent_span_id and len(parent_span_id) != 8:
        return RejectReason.PARENT_SPAN_ID, f"parent_span_id is {len(parent_span_id)} bytes, want 8 or empty"
    return None


def _time_problem(start: int, end: int, received_time_ns: int, limits: DecodeLimits) -> tuple[RejectReason, str] | None:
    if start == 0:
        return RejectReason.START_TIME, "start_time is zero"
    if end < start:
        return RejectReason.END_TIME, f"end_time before start_time ({end} < {start})"
    if end > _MAX_TIME_NS:  # OTLP times are uint64; the dataset's timestamps are int64
        return RejectReason.END_TIME, f"end_time {end} is past the largest timestamp ({_MAX_TIME_NS} ns)"
    max_age = limits.span_max_age_ns
    if max_age is not None and start < received_time_ns - max_age:
        return RejectReason.TIME_WINDOW, (
            f"start_time {start} is more than {max_age / 3.6e12:g} h before its receipt ({received_time_ns})"
        )
    max_future = limits.span_max_future_ns
    if max_future is not None and start > received_time_ns + max_future:
        return RejectReason.TIME_WINDOW, (
            f"start_time {start} is more than {max_future / 6e10:g} min after its receipt ({received_time_ns})"
        )
    return None


def _link_rows(span, limits: DecodeLimits) -> tuple[list[dict], tuple[RejectReason, str] | None]:
    rows: list[dict] = []
    links = span.links
    for i, link in enumerate(links):
        if len(link.trace_id) != 16 or link.trace_id == _ZERO_TRACE_ID:
            return rows, (
                RejectReason.LINK,
                f"link {i} trace_id is {len(link.trace_id)} bytes or zero, want 16 non-zero",
            )
        if len(link.span_id) != 8 or link.span_id == _ZERO_SPAN_ID:
            return rows, (RejectReason.LINK, f"link {i} span_id is {len(link.span_id)} bytes or zero, want 8 non-zero")
        if i < limits.max_links:
            attrs = _cap(attribute_map(attributes_to_dict(link.attributes)), limits) if link.attributes else {}
            rows.append({"trace_id": link.trace_id, "span_id": link.span_id, "attributes": attrs})
    return rows, None


def _resource_columns(resource, limits: DecodeLimits) -> dict[str, object]:
    text = attribute_map(attributes_to_dict(resource.attributes))
    columns: dict[str, object] = {
        "service_name": text.get("service.name"),
        "k8s_namespace": text.get("k8s.namespace.name"),
        "k8s_pod": text.get("k8s.pod.name"),
        "k8s_node": text.get("k8s.node.name"),
        "k8s_container": text.get("k8s.container.name"),
    }
    _text_columns(columns, _RESOURCE_TEXT_COLUMNS, limits)
    # shared by every row of this resource (arrow_rows stores it once): consumers must not mutate it
    columns["resource_attributes"] = _cap(text, limits)
    return columns


def _describe(index: int, span, reason: str) -> str:
    return f"span {index} (trace {span.trace_id.hex() or '-'} span {span.span_id.hex() or '-'}): {reason}"


def decode_traces(
    request: ExportTraceServiceRequest, received_time_ns: int, limits: DecodeLimits = DEFAULT_LIMITS
) -> DecodeResult:
    """Validate and flatten every span of the request; see the module docstring."""
    result = DecodeResult()
    accepted = result.spans
    rejections = result.rejections
    index = -1  # position of the span in the request, for error messages
    n_kinds = len(SPAN_KINDS)
    n_status = len(STATUS_CODES)
    max_value = limits.max_attribute_value_chars
    max_id = limits.max_id_chars
    # starts outside [earliest, latest] are rejected (no window: the whole int64 range)
    earliest = received_time_ns - limits.span_max_age_ns if limits.span_max_age_ns is not None else 1
    latest = received_time_ns + limits.span_max_future_ns if limits.span_max_future_ns is not None else _MAX_TIME_NS
    # one bytes object per distinct id in this request: the spans of a trace share their trace_id, and a
    # parent's span_id is its children's parent_span_id (saves ~90 B per held span)
    ids: dict[bytes, bytes] = {}
    for resource_spans in request.resource_spans:
        base = _ROW_TEMPLATE.copy()
        base.update(_resource_columns(resource_spans.resource, limits))
        base["received_time"] = received_time_ns
        for scope_spans in resource_spans.scope_spans:
            scope = scope_spans.scope
            scope_attrs = {}
            if scope.name:
                scope_attrs[SCOPE_NAME_KEY] = scope.name
            if scope.version:
                scope_attrs[SCOPE_VERSION_KEY] = scope.version
            if scope_attrs:
                scope_attrs = _cap(scope_attrs, limits)
            for span in scope_spans.spans:
                index += 1
                trace_id = span.trace_id
                span_id = span.span_id
                parent = span.parent_span_id
                if (
                    len(trace_id) == 16
                    and len(span_id) == 8
                    and (not parent or len(parent) == 8)
                    and trace_id != _ZERO_TRACE_ID
                    and span_id != _ZERO_SPAN_ID
                ):
                    problem = None  # the common case, checked inline (no call per span)
                else:
                    problem = _id_problem(trace_id, span_id, parent)
                if problem is None:
                    start = span.start_time_unix_nano
                    end = span.end_time_unix_nano
                    if not (earliest <= start <= end <= _MAX_TIME_NS) or start > latest:
                        problem = _time_problem(start, end, received_time_ns, limits)
                links = _NO_LINKS
                if problem is None and span.links:
                    links, problem = _link_rows(span, limits)
                if problem is None:
                    name = span.name
                    kind = span.kind
                    # the GenAI columns go straight into the row: it holds them all, None-valued
                    row = base.copy()
                    try:
                        attrs = _span_attributes(span.attributes)
                        consumed = normalize_into(row, name, kind, attrs)
                    except InvalidSpan as err:
                        problem = (RejectReason.USAGE, str(err) or "invalid GenAI attributes")
                    except Exception as err:  # one value the decoder cannot take rejects its span, not the batch
                        problem = (RejectReason.INVALID_VALUE, f"cannot decode a value: {type(err).__name__}: {err}")
                if problem is not None:
                    rejections.append(Rejection(problem[0], _describe(index, span, problem[1])))
                    continue

                attributes, long_text = _attribute_map(attrs, consumed, limits)
                if long_text or len(name) > max_id:  # typed columns come from these values and the name
                    _text_columns(row, _SPAN_TEXT_COLUMNS, limits)
                if scope_attrs:
                    attributes.update(scope_attrs)
                if len(span.links) > limits.max_links:
                    attributes[DROPPED_LINKS_KEY] = str(len(span.links) - limits.max_links)

                status = span.status
                code = status.code
                message = status.message
                row["trace_id"] = ids.setdefault(trace_id, trace_id)
                row["span_id"] = ids.setdefault(span_id, span_id)
                row["parent_span_id"] = ids.setdefault(parent, parent) if parent else None
                if len(name) <= _INTERN_MAX_CHARS:
                    row["name"] = intern(name)
                else:
                    row["name"] = name if len(name) <= max_value else limits.truncate_value(name)
                row["span_kind"] = SPAN_KINDS[kind] if 0 <= kind < n_kinds else SPAN_KINDS[0]
                row["start_time"] = start
                row["end_time"] = end
                row["status_code"] = STATUS_CODES[code] if 0 <= code < n_status else STATUS_CODES[0]
                if message:
                    row["status_message"] = message if len(message) <= max_value else limits.truncate_value(message)
                row["links"] = links
                row["attributes"] = attributes
                accepted.append(row)
    return result
