"""rows_to_table (the receiver's row -> Arrow conversion) gives exactly `Table.from_pylist(rows, schema=SPANS)`
once the Parquet writer has expanded the resource maps, which it holds once per distinct resource."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import CORPUS
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from collector_ext.decode.arrow_rows import DECODED_SPANS, rows_to_table
from collector_ext.decode.spans import decode_traces
from collector_ext.schema import SPANS
from collector_ext.storage.dataset_files import plain_columns
from collector_ext.traces.span_refs import STITCH_OUTPUT, span_refs
from collector_ext.traces.stitching import stitch_traces

RECEIVED = 1_800_000_000_000_000_000


def corpus_rows() -> list[dict]:
    """Every corpus span, decoded, with the stitching columns stitching gives it trace by trace: the rows the
    pipeline writes."""
    traces: dict[bytes, list[dict]] = {}
    for path in sorted(CORPUS.glob("*.pb")):
        request = ExportTraceServiceRequest.FromString(path.read_bytes())
        for row in decode_traces(request, RECEIVED).spans:
            traces.setdefault(row["trace_id"], []).append(row)
    rows = [row for trace in traces.values() for row in trace]
    refs = stitch_traces([span_refs(rows_to_table(trace)) for trace in traces.values()], keep="all")
    for row, ref in zip(rows, refs, strict=True):
        assert (row["trace_id"], row["span_id"]) == (ref.trace_id, ref.span_id)
        row.update({name: getattr(ref, name) for name in STITCH_OUTPUT})
    return rows


def test_corpus_rows_give_the_from_pylist_table() -> None:
    rows = corpus_rows()
    decoded = rows_to_table(rows)
    assert decoded.schema == DECODED_SPANS
    table = plain_columns(decoded)
    assert table.schema == SPANS
    assert table.num_rows == len(rows) == 110
    assert table.equals(pa.Table.from_pylist(rows, schema=SPANS))
    # spot checks against the rows themselves (shared resource maps repeated by `take`)
    assert table.column("span_id").to_pylist() == [row["span_id"] for row in rows]
    assert table.column("resource_attributes").to_pylist() == [list(row["resource_attributes"].items()) for row in rows]
    assert table.column("input_tokens").to_pylist() == [row["input_tokens"] for row in rows]


def test_missing_keys_are_null_and_all_null_columns_keep_their_type(tmp_path) -> None:
    shared = {"service.name": "svc", "k8s.pod.name": "pod-1"}
    rows = [
        {
            "trace_id": bytes([1]) * 16,
            "span_id": bytes([n + 1]) * 8,
            "start_time": 1_000 + n,
            "end_time": 2_000 + n,
            "resource_attributes": shared if n != 2 else {"service.name": "other"},
            "attributes": {"n": str(n)} if n else {},
            "links": [],
            "input_tokens": 7 if n == 1 else None,
        }
        for n in range(4)
    ]
    decoded = rows_to_table(rows)
    # two distinct resource maps (one shared by three rows) are stored once each
    assert len(decoded.column("resource_attributes").chunk(0).dictionary) == 2
    table = plain_columns(decoded)
    assert table.equals(pa.Table.from_pylist(rows, schema=SPANS))
    assert table.column("input_tokens").to_pylist() == [None, 7, None, None]
    assert table.column("agent_depth").type == pa.int32()
    assert table.column("agent_depth").null_count == 4
    assert table.column("resource_attributes").to_pylist() == [
        [("service.name", "svc"), ("k8s.pod.name", "pod-1")],
        [("service.name", "svc"), ("k8s.pod.name", "pod-1")],
        [("service.name", "other")],
        [("service.name", "svc"), ("k8s.pod.name", "pod-1")],
    ]
    pq.write_table(table, tmp_path / "rows.parquet")
    assert pq.read_table(tmp_path / "rows.parquet").equals(table)


def test_no_rows_is_an_empty_table_of_the_schema() -> None:
    table = rows_to_table([])
    assert (table.num_rows, table.schema) == (0, DECODED_SPANS)
    assert plain_columns(table).schema == SPANS


def test_a_wrong_value_type_fails_as_from_pylist_does() -> None:
    row = {name: None for name in SPANS.names} | {"trace_id": b"x" * 16, "span_id": b"y" * 8, "agent_depth": "deep"}
    with pytest.raises((pa.ArrowInvalid, pa.ArrowTypeError)):
        pa.Table.from_pylist([row], schema=SPANS)
    with pytest.raises((pa.ArrowInvalid, pa.ArrowTypeError)):
        rows_to_table([row])
