"""The receiver's view of held spans: one small ref per span pointing into its request's Arrow table.

Decoding (parse, validate, normalize, build the Arrow columns) is most of the receiver's CPU and needs
nothing but the request, so it runs in decode processes (`decode_pool.py`) in parallel with the receiver
process, which keeps what must see every trace: the trace buffer, stitching, live state and the writer.
Those read only a few fields of a span, so the receiver process never rebuilds whole rows:

    decode process:   request bytes -> DecodedBatch (accepted spans as an Arrow table of schema SPANS,
                      rejected count, one reason per rejected span); sent back as an Arrow IPC stream
    receiver process: span_refs(batch) -> one dict per span with the STITCH_INPUT fields and where its
                      row is (`_batch`: the table and its WAL segment, `_index`); stitching writes the
                      STITCH_OUTPUT fields into it;
                      assemble(refs) -> the Parquet table: the rows taken from their batches, with the
                      stitching columns from the dicts.

The same functions run in the receiver process when there are no decode processes, so there is one path.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from operator import itemgetter

import pyarrow as pa
import pyarrow.compute as pc

from collector_ext.decode.dialects import TOKEN_COLUMNS
from collector_ext.schema import SPANS

# What the trace buffer, the stitcher, the keep rule and live state read of a span.
STITCH_INPUT = (
    "trace_id",
    "span_id",
    "parent_span_id",
    "name",
    "category",
    "agent_name",
    "agent_id",
    "service_name",
    "k8s_namespace",
    "start_time",
    "links",
    "response_id",
    "has_usage",  # not a column: any token count > 0 (stitching.has_usage reads it instead of five columns)
)
# What stitching decides for a span: these columns of the written table come from the dicts.
STITCH_OUTPUT = (
    "agent_name",
    "agent_id",
    "agent_span_id",
    "parent_agent_name",
    "agent_depth",
    "task_id",
    "stitch_state",
    "usage_counted",
)
# Every key a ref will hold, present from the start: a dict that grows past its size is rebuilt, and the
# stitching columns are written into every ref.
_REF_TEMPLATE = dict.fromkeys((*STITCH_INPUT, *STITCH_OUTPUT, "_batch", "_index"))


class HeldBatch:
    """The table of one decoded request while any of its spans is held, and the WAL segment it is in."""

    __slots__ = ("table", "wal_seq")

    def __init__(self, table: pa.Table) -> None:
        self.table = table
        self.wal_seq: int | None = None


def span_refs(table: pa.Table) -> list[dict]:
    """One dict per row of `table`: the STITCH_INPUT fields, the row's HeldBatch (`_batch`, shared by the
    refs of the table) and index in it (`_index`), and the STITCH_OUTPUT keys for stitching to fill."""
    derived = {
        "start_time": table.column("start_time").cast(pa.int64()),  # int nanoseconds, as decode made them
        "has_usage": _has_usage(table),
    }
    columns = [(derived[name] if name in derived else table.column(name)).to_pylist() for name in STITCH_INPUT]
    count = table.num_rows
    columns.append([HeldBatch(table)] * count)
    columns.append(range(count))
    keys = (*STITCH_INPUT, "_batch", "_index")
    template = _REF_TEMPLATE
    refs = []
    for values in zip(*columns, strict=True):
        ref = template.copy()
        ref.update(zip(keys, values, strict=True))
        refs.append(ref)
    return refs


def _has_usage(table: pa.Table) -> pa.ChunkedArray:
    positive = [pc.fill_null(pc.greater(table.column(name), 0), False) for name in TOKEN_COLUMNS]
    return functools.reduce(pc.or_, positive)


@dataclass
class Assembled:
    table: pa.Table  # the rows to write, schema SPANS
    batches: list[tuple[HeldBatch, int]]  # each batch the rows came from, and how many


def assemble(refs: list[dict]) -> Assembled:
    """The table to write: the refs' rows taken from their batches, with the stitching columns from the refs.

    Rows are grouped by the batch they came in (a trace's spans stay together within each batch): one `take`
    per batch, or the batch itself when all its rows are written in order (the common case), and no copy
    of the rest of the columns until the Parquet writer reads them. Each ref is read once (refs held for
    a while are no longer in the CPU's caches: one pass over them, not one per column)."""
    if not refs:
        return Assembled(SPANS.empty_table(), [])
    groups: dict[int, list[tuple]] = {}  # id(HeldBatch) -> (batch, index, *stitching columns) of its refs
    for row in map(_ASSEMBLY_FIELDS, refs):
        group = groups.get(id(row[0]))
        if group is None:
            groups[id(row[0])] = [row]
        else:
            group.append(row)
    parts = []
    batches = []
    for group in groups.values():
        held: HeldBatch = group[0][0]
        batches.append((held, len(group)))
        indices = [row[1] for row in group]
        count = held.table.num_rows
        whole = len(indices) == count and indices[-1] == count - 1 and sorted(indices) == indices
        parts.append(held.table if whole else held.table.take(pa.array(indices, type=pa.int32())))
    table = pa.concat_tables(parts) if len(parts) > 1 else parts[0]
    ordered = next(iter(groups.values())) if len(groups) == 1 else [row for group in groups.values() for row in group]
    columns = list(zip(*ordered, strict=True))[2:]
    for name, values in zip(STITCH_OUTPUT, columns, strict=True):
        position = SPANS.get_field_index(name)
        target = SPANS.field(position)
        table = table.set_column(position, target, pa.array(values, type=target.type))
    return Assembled(table, batches)


_ASSEMBLY_FIELDS = itemgetter("_batch", "_index", *STITCH_OUTPUT)
