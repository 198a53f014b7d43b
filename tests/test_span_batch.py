"""span_refs: decode to Arrow + span refs + stitching + assemble gives exactly the table of the row path
(decode_traces rows with the same stitching columns, rows_to_table), on every corpus request."""

from __future__ import annotations

import pyarrow as pa
from conftest import CORPUS
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from collector_ext.decode.arrow_rows import rows_to_table
from collector_ext.decode.batch import decode_request
from collector_ext.decode.spans import decode_traces
from collector_ext.schema import SPANS
from collector_ext.storage.dataset_files import plain_columns
from collector_ext.traces.span_refs import NO_LINKS, STITCH_OUTPUT, SpanRef, assemble, span_refs
from collector_ext.traces.stitching import stitch_traces

RECEIVED = 1_800_000_000_000_000_000


def _by_trace(refs: list[SpanRef]) -> list[list[SpanRef]]:
    traces: dict[bytes, list[SpanRef]] = {}
    for ref in refs:
        traces.setdefault(ref.trace_id, []).append(ref)
    return list(traces.values())


def _sorted(table: pa.Table) -> pa.Table:
    return table.sort_by([("trace_id", "ascending"), ("span_id", "ascending")])


def test_assembled_corpus_equals_the_row_path() -> None:
    rows: list[dict] = []
    refs: list[SpanRef] = []
    for path in sorted(CORPUS.glob("*.pb")):
        payload = path.read_bytes()
        rows.extend(decode_traces(ExportTraceServiceRequest.FromString(payload), RECEIVED).spans)
        batch = decode_request(payload, RECEIVED)
        assert batch.malformed is None and batch.rejected == 0
        refs.extend(span_refs(batch.table))
    stitched = stitch_traces(_by_trace(refs), keep="all")
    decided = {(ref.trace_id, ref.span_id): ref for ref in stitched}
    for row in rows:  # the row path: the decoder's rows with the same stitching decisions
        ref = decided[(row["trace_id"], row["span_id"])]
        row.update({name: getattr(ref, name) for name in STITCH_OUTPUT})
    # resource maps stay dictionary-encoded (once per resource) until the Parquet writer expands them
    expected = plain_columns(rows_to_table(rows))
    assembled = plain_columns(assemble(stitched).table)
    assert assembled.schema == SPANS
    assert assembled.num_rows == expected.num_rows == len(decided) == 110
    assert _sorted(assembled).equals(_sorted(expected))
    # the refs read the stitching inputs back as the decoder made them (ints, not datetimes; links as pairs)
    assert all(type(ref.start_time) is int for ref in refs)
    by_id = {(row["trace_id"], row["span_id"]): row for row in rows}
    for ref in refs:
        row = by_id[(ref.trace_id, ref.span_id)]
        assert ref.links == tuple((link["trace_id"], link["span_id"]) for link in row["links"])
        assert (ref.name, ref.category, ref.service_name, ref.response_id) == (
            row["name"],
            row["category"],
            row["service_name"],
            row["response_id"],
        )
    fresh = span_refs(decode_request(sorted(CORPUS.glob("*.pb"))[0].read_bytes(), RECEIVED).table)
    assert fresh[0].task_id is None and fresh[0].batch is not None and fresh[0].batch.table.num_rows == len(fresh)


def test_refs_share_repeated_values_and_carry_link_pairs() -> None:
    """Equal values within a request are one object (memory per held span); links become (trace, span) pairs."""
    linked = Span(
        trace_id=(2).to_bytes(16, "big"),
        span_id=(9).to_bytes(8, "big"),
        name="span 0",
        start_time_unix_nano=1_000,
        end_time_unix_nano=2_000,
        links=[Span.Link(trace_id=(1).to_bytes(16, "big"), span_id=(3).to_bytes(8, "big"))],
    )
    request = ExportTraceServiceRequest.FromString(_request(4))
    request.resource_spans[0].scope_spans[0].spans.append(linked)
    refs = span_refs(decode_request(request.SerializeToString(), RECEIVED).table)
    assert refs[0].trace_id == refs[3].trace_id and refs[0].trace_id is refs[3].trace_id  # trace 1 twice
    assert refs[0].service_name is refs[1].service_name is refs[4].service_name
    assert [ref.links for ref in refs] == [NO_LINKS] * 4 + [(((1).to_bytes(16, "big"), (3).to_bytes(8, "big")),)]
    assert all(ref.links is NO_LINKS for ref in refs[:4])


def _request(spans: int) -> bytes:
    made = [
        Span(
            trace_id=(n % 3 + 1).to_bytes(16, "big"),
            span_id=(n + 1).to_bytes(8, "big"),
            name=f"span {n}",
            start_time_unix_nano=1_000 + n,
            end_time_unix_nano=2_000 + n,
        )
        for n in range(spans)
    ]
    request = ExportTraceServiceRequest(resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=made)])])
    return request.SerializeToString()


def test_a_subset_in_any_order_takes_those_rows_grouped_by_batch() -> None:
    first = span_refs(decode_request(_request(6), RECEIVED).table)
    second = span_refs(decode_request(_request(4), RECEIVED).table)
    chosen = [second[3], first[4], second[0], first[1], first[0]]
    for n, ref in enumerate(chosen):
        ref.task_id = bytes([n + 1]) * 16
        ref.agent_depth = n
    assembled = assemble(chosen)
    table = assembled.table
    assert [(batch.table.num_rows, count) for batch, count in assembled.batches] == [(4, 2), (6, 3)]
    # batches in the order first asked for (second, then first), each batch's rows in the order asked
    assert table.column("name").to_pylist() == ["span 3", "span 0", "span 4", "span 1", "span 0"]
    assert table.column("agent_depth").to_pylist() == [0, 2, 1, 3, 4]
    assert table.column("task_id").to_pylist() == [bytes([n]) * 16 for n in (1, 3, 2, 4, 5)]
    assert table.column("start_time").cast(pa.int64()).to_pylist() == [1_003, 1_000, 1_004, 1_001, 1_000]


def test_a_whole_batch_in_order_is_written_as_it_is() -> None:
    table = decode_request(_request(5), RECEIVED).table
    refs = span_refs(table)
    for ref in refs:
        ref.stitch_state = "ok"
    assembled = assemble(refs).table
    assert assembled.column("span_id").to_pylist() == table.column("span_id").to_pylist()
    assert assembled.column("stitch_state").to_pylist() == ["ok"] * 5
    # written as it is: the other columns are the batch's own buffers, not copies
    for name in ("span_id", "attributes", "start_time"):
        assert (
            assembled.column(name).chunks[0].buffers()[-1].address == table.column(name).chunks[0].buffers()[-1].address
        )
    assert assemble([]).table.equals(SPANS.empty_table())


def test_a_malformed_request_and_rejected_spans_are_reported_not_raised() -> None:
    malformed = decode_request(b"\x0a\x05garbage", RECEIVED)
    assert malformed.table is None
    assert malformed.malformed.startswith("request is not a valid ExportTraceServiceRequest")
    bad = Span(trace_id=b"short", span_id=(1).to_bytes(8, "big"), start_time_unix_nano=1, end_time_unix_nano=2)
    good = Span(trace_id=(1).to_bytes(16, "big"), span_id=(2).to_bytes(8, "big"), start_time_unix_nano=1)
    good.end_time_unix_nano = 2
    request = ExportTraceServiceRequest(resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=[bad, good])])])
    decoded = decode_request(request.SerializeToString(), RECEIVED)
    assert (decoded.accepted, decoded.rejected, decoded.total) == (1, 1, 2)
    assert decoded.errors == ["span 0 (trace 73686f7274 span 0000000000000001): trace_id is 5 bytes, want 16"]
