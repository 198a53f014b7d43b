"""A decoded export request: the accepted spans as one Arrow table (schema SPANS) and the rejections.

Decoding (parse, validate, normalize, build the Arrow columns) is most of the receiver's CPU and needs nothing
but the request, so it runs in decode processes (`pool.py`) in parallel with the receiver process; the same
function runs in the receiver process when there are none, so there is one path.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from collector_ext.decode.arrow_rows import rows_to_table
from collector_ext.decode.spans import decode_traces
from collector_ext.errors import ReceiverError, parse_request


@dataclass
class DecodedBatch:
    """The outcome of decoding one export request (decode_pool.py carries it across processes)."""

    table: pa.Table | None = None  # accepted spans, schema SPANS; None when none was accepted
    rejected: int = 0
    errors: list[str] = field(default_factory=list)  # one message per rejected span
    malformed: str | None = None  # the request as a whole could not be parsed
    internal_error: str | None = None  # decoding failed in a decode process (a bug): the request fails

    @property
    def accepted(self) -> int:
        return 0 if self.table is None else self.table.num_rows

    @property
    def total(self) -> int:
        return self.accepted + self.rejected


def decode_request(payload: bytes, received_time_ns: int) -> DecodedBatch:
    """Parse, validate and decode a serialized ExportTraceServiceRequest (deterministic, see decode.py)."""
    try:
        request = parse_request(ExportTraceServiceRequest, payload)
    except ReceiverError as err:
        return DecodedBatch(malformed=err.message)
    result = decode_traces(request, received_time_ns)
    table = rows_to_table(result.spans, in_schema_order=True) if result.spans else None  # decode's template rows
    return DecodedBatch(table, result.rejected, result.errors)
