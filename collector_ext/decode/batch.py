"""A decoded export request: the accepted spans as one Arrow table and the rejections.

Decoding (parse, validate, normalize, build the Arrow columns) is most of the receiver's CPU and needs nothing
but the request, so it runs in decode processes (`pool.py`) in parallel with the receiver process; the same
function runs in the receiver process when there are none, so there is one path. OTLP/JSON bodies are
parsed here too (not in the receiver process): the parse tree is the largest transient of all.

The table has the columns of schema SPANS, with `resource_attributes` dictionary-encoded (arrow_rows.py:
one map per resource, not one per span); `storage/dataset_files.py` writes it as the plain map column.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import pyarrow as pa
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from collector_ext.decode import otlp_json
from collector_ext.decode.arrow_rows import rows_to_table
from collector_ext.decode.limits import DEFAULT_LIMITS, DecodeLimits
from collector_ext.decode.rejections import Rejection
from collector_ext.decode.spans import decode_traces
from collector_ext.errors import ReceiverError, parse_request


class Encoding(enum.Enum):
    PROTOBUF = "protobuf"
    JSON = "json"


@dataclass
class DecodedBatch:
    """The outcome of decoding one export request (pool.py carries it across processes)."""

    table: pa.Table | None = None  # accepted spans; None when none was accepted
    rejections: list[Rejection] = field(default_factory=list)  # one per rejected span, in request order
    malformed: str | None = None  # the request as a whole could not be parsed
    malformed_field: str = "body"  # where (a JSON path for OTLP/JSON), for the BadRequest details
    internal_error: str | None = None  # decoding failed in a decode process (a bug): the request fails
    # the request as serialized protobuf when it came in another encoding (the WAL keeps protobuf)
    protobuf: bytes | None = None

    @property
    def rejected(self) -> int:
        return len(self.rejections)

    @property
    def errors(self) -> list[str]:
        return [rejection.message for rejection in self.rejections]

    @property
    def accepted(self) -> int:
        return 0 if self.table is None else self.table.num_rows

    @property
    def total(self) -> int:
        return self.accepted + self.rejected


def decode_request(
    payload: bytes,
    received_time_ns: int,
    limits: DecodeLimits = DEFAULT_LIMITS,
    encoding: Encoding = Encoding.PROTOBUF,
) -> DecodedBatch:
    """Parse, validate and decode an ExportTraceServiceRequest (deterministic for given limits, see spans.py)."""
    protobuf = None
    if encoding is Encoding.JSON:
        try:
            request = otlp_json.parse_trace_request(payload)
        except otlp_json.OtlpJsonError as err:
            return DecodedBatch(malformed=str(err), malformed_field=err.path)
        protobuf = request.SerializeToString()
    else:
        try:
            request = parse_request(ExportTraceServiceRequest, payload)
        except ReceiverError as err:
            return DecodedBatch(malformed=err.message)
    result = decode_traces(request, received_time_ns, limits)
    table = rows_to_table(result.spans, in_schema_order=True) if result.spans else None  # decode's template rows
    return DecodedBatch(table, result.rejections, protobuf=protobuf)
