"""OTLP/JSON <-> protobuf messages (the OTLP/HTTP JSON encoding).

OTLP/JSON differs from protobuf's canonical JSON mapping in one way that matters: trace and span ids are
hex strings, where `json_format` expects base64 for `bytes` fields and would silently decode hex as
base64 (wrong bytes, often the wrong length). So every id field (`traceId`, `spanId`, `parentSpanId`, in
spans, links and metric exemplars; snake_case spellings too) is converted from hex before `ParseDict`.
The rest is what `ParseDict` already accepts: lowerCamelCase or snake_case keys, int64 as strings or
numbers, enums as ints or names. Unknown fields are ignored, as the OTLP spec requires of receivers.
An id that is not hex makes the whole request malformed (HTTP 400, the BadRequest field violation names
the JSON path); hex of the wrong length decodes, and the decoder then rejects that span alone (partial
success). Nesting deeper than Python's recursion limit is malformed too, never a crash.

Cost: parsing takes about 6x the body's size in memory and runs at ~5 MB/s (json.loads, then
json_format.ParseDict). It runs in a decode process (decode/batch.py), one JSON request at a time
(decode/pool.py), so the receiver's memory stays bounded by --max-recv-msg-mib whatever clients send.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any, TypeVar

from google.protobuf import json_format
from google.protobuf.message import Message
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

M = TypeVar("M", bound=Message)

ID_KEYS = frozenset({"traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id"})


class OtlpJsonError(ValueError):
    """The body is not a valid OTLP/JSON message (answered 400); `path` names where, when known."""

    def __init__(self, message: str, path: str = "body") -> None:
        super().__init__(message)
        self.path = path


def _hex_ids_to_base64(node: Any, path: str = "$") -> None:
    """Rewrite every hex id string in the JSON tree, in place, to the base64 json_format expects."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ID_KEYS and isinstance(value, str):
                try:
                    raw = bytes.fromhex(value)
                except ValueError:
                    raise OtlpJsonError(f"{path}.{key} is not a hex string: {value[:64]!r}", f"{path}.{key}") from None
                node[key] = base64.b64encode(raw).decode("ascii")
            elif isinstance(value, dict | list):
                _hex_ids_to_base64(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, item in enumerate(node):
            if isinstance(item, dict | list):
                _hex_ids_to_base64(item, f"{path}[{i}]")


def _parse(body: bytes | str, message: M) -> M:
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError) as err:
        raise OtlpJsonError(f"body is not JSON: {err}") from None
    except RecursionError:
        raise OtlpJsonError("body is nested too deeply") from None
    if not isinstance(document, dict):
        raise OtlpJsonError("body is not a JSON object")
    try:
        _hex_ids_to_base64(document)
        return json_format.ParseDict(document, message, ignore_unknown_fields=True)
    except (json_format.ParseError, binascii.Error, ValueError, TypeError) as err:
        if isinstance(err, OtlpJsonError):
            raise
        raise OtlpJsonError(f"not a valid {type(message).__name__}: {err}") from None
    except RecursionError:
        raise OtlpJsonError("body is nested too deeply") from None


def parse_trace_request(body: bytes | str) -> ExportTraceServiceRequest:
    """OTLP/JSON ExportTraceServiceRequest -> protobuf message; raises OtlpJsonError."""
    return _parse(body, ExportTraceServiceRequest())


def parse_metrics_request(body: bytes | str) -> ExportMetricsServiceRequest:
    """OTLP/JSON ExportMetricsServiceRequest -> protobuf message; raises OtlpJsonError."""
    return _parse(body, ExportMetricsServiceRequest())


def _base64_ids_to_hex(node: Any) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ID_KEYS and isinstance(value, str):
                node[key] = base64.b64decode(value).hex()
            elif isinstance(value, dict | list):
                _base64_ids_to_hex(value)
    elif isinstance(node, list):
        for item in node:
            _base64_ids_to_hex(item)


def to_json_dict(message: Message) -> dict:
    """A protobuf message as an OTLP/JSON document (hex ids, lowerCamelCase keys)."""
    document = json_format.MessageToDict(message, preserving_proto_field_name=False)
    _base64_ids_to_hex(document)
    return document


def encode(message: Message) -> bytes:
    """A response (ExportTraceServiceResponse with partialSuccess, google.rpc.Status, ...) as JSON bytes."""
    return json.dumps(to_json_dict(message), separators=(",", ":")).encode()
