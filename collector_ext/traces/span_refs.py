"""The receiver's view of held spans: one small `SpanRef` per span pointing into its request's Arrow table.

Decoding (parse, validate, normalize, build the Arrow columns) is most of the receiver's CPU and needs
nothing but the request, so it runs in decode processes (`decode/pool.py`) in parallel with the receiver
process, which keeps what must see every trace: the trace buffer, stitching, live state and the writer.
Those read only a few fields of a span, so the receiver process never rebuilds whole rows:

    decode process:   request bytes -> DecodedBatch (accepted spans as an Arrow table of schema SPANS,
                      rejected count, one reason per rejected span); sent back as an Arrow IPC stream
    receiver process: span_refs(table) -> one SpanRef per span: the fields stitching and live state read,
                      and where its row is (`batch`: the table and its WAL segment, `index`); stitching
                      writes its decisions (the STITCH_OUTPUT columns) into the ref;
                      assemble(refs) -> the Parquet table: the rows taken from their batches, with the
                      stitching columns from the refs.

A SpanRef is a slotted object (22 slots: ~210 bytes, against ~460 for the dict it replaced) and equal
values within a request (trace ids, names, categories, service and agent names) are one shared object, so
that the half million spans `--max-held-spans` allows stay small. The same functions run in the receiver
process when there are no decode processes, so there is one path.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from operator import attrgetter

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from collector_ext.decode.dialects import TOKEN_COLUMNS
from collector_ext.schema import SPANS

Link = tuple[bytes, bytes]  # (trace_id, span_id) of a link target
NO_LINKS: tuple[Link, ...] = ()

# The columns of a span that the trace buffer, the stitcher, the keep rule and live state read, in the order
# of SpanRef's positional arguments.
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
    "graph_node",
)
# What stitching decides for a span: these columns of the written table come from the refs.
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
# Columns of few distinct values per request: one Python object per distinct value, shared by the refs.
_SHARED = frozenset(
    {"trace_id", "name", "category", "agent_name", "agent_id", "service_name", "k8s_namespace", "graph_node"}
)


class HeldBatch:
    """The table of one decoded request while any of its spans is held, and the WAL segment it is in."""

    __slots__ = ("table", "wal_seq")

    def __init__(self, table: pa.Table, wal_seq: int | None = None) -> None:
        self.table = table
        self.wal_seq = wal_seq


class SpanRef:
    """One held span: what stitching and live state read, what stitching decides, and where its row is.

    `links` are the (trace_id, span_id) pairs of the span's links; `has_usage` is whether any token count is
    above zero; `start_time` is int nanoseconds since the epoch. `batch` is None only for refs made by hand
    (tests), which `assemble` cannot write.
    """

    __slots__ = (
        *STITCH_INPUT,
        "has_usage",
        "agent_span_id",
        "parent_agent_name",
        "agent_depth",
        "task_id",
        "stitch_state",
        "usage_counted",
        "batch",
        "index",
    )

    trace_id: bytes
    span_id: bytes
    parent_span_id: bytes | None
    name: str | None
    category: str | None
    agent_name: str | None
    agent_id: str | None
    service_name: str | None
    k8s_namespace: str | None
    start_time: int
    links: tuple[Link, ...]
    response_id: str | None
    graph_node: str | None
    has_usage: bool
    agent_span_id: bytes | None
    parent_agent_name: str | None
    agent_depth: int | None
    task_id: bytes | None
    stitch_state: str | None
    usage_counted: bool | None
    batch: HeldBatch | None
    index: int

    def __init__(
        self,
        trace_id: bytes,
        span_id: bytes,
        parent_span_id: bytes | None = None,
        name: str | None = None,
        category: str | None = None,
        agent_name: str | None = None,
        agent_id: str | None = None,
        service_name: str | None = None,
        k8s_namespace: str | None = None,
        start_time: int = 0,
        links: tuple[Link, ...] = NO_LINKS,
        response_id: str | None = None,
        graph_node: str | None = None,
        has_usage: bool = False,
        batch: HeldBatch | None = None,
        index: int = 0,
    ) -> None:
        self.trace_id = trace_id
        self.span_id = span_id
        self.parent_span_id = parent_span_id
        self.name = name
        self.category = category
        self.agent_name = agent_name
        self.agent_id = agent_id
        self.service_name = service_name
        self.k8s_namespace = k8s_namespace
        self.start_time = start_time
        self.links = links
        self.response_id = response_id
        self.graph_node = graph_node
        self.has_usage = has_usage
        self.agent_span_id = None
        self.parent_agent_name = None
        self.agent_depth = None
        self.task_id = None
        self.stitch_state = None
        self.usage_counted = None
        self.batch = batch
        self.index = index

    def copy(self) -> SpanRef:
        twin = SpanRef.__new__(SpanRef)
        for name in SpanRef.__slots__:
            setattr(twin, name, getattr(self, name))
        return twin

    def __repr__(self) -> str:
        return f"SpanRef(trace_id={self.trace_id.hex()}, span_id={self.span_id.hex()}, name={self.name!r})"


def span_refs(table: pa.Table) -> list[SpanRef]:
    """One SpanRef per row of `table` (schema SPANS), sharing one HeldBatch (the table; its WAL segment is
    set once the request is in the WAL)."""
    columns: list[Iterable] = []
    for name in STITCH_INPUT:
        column = table.column(name)
        if name == "start_time":
            columns.append(column.cast(pa.int64()).to_pylist())  # int nanoseconds, as decode made them
        elif name == "links":
            columns.append(_link_pairs(column))
        elif name in _SHARED:
            columns.append(_shared_values(column))
        else:
            columns.append(column.to_pylist())
    count = table.num_rows
    columns.append(_has_usage(table).to_pylist())
    columns.append([HeldBatch(table)] * count)
    columns.append(range(count))
    return list(map(SpanRef, *columns))


def _shared_values(column: pa.ChunkedArray) -> list:
    """The column's values as Python objects, one object per distinct value (not one per row)."""
    values: list = []
    for chunk in column.chunks:
        encoded = chunk.dictionary_encode()
        distinct = encoded.dictionary.to_pylist()
        indices = encoded.indices.to_pylist()
        if encoded.null_count:
            values.extend(None if i is None else distinct[i] for i in indices)
        else:
            values.extend(map(distinct.__getitem__, indices))
    return values


def _link_pairs(column: pa.ChunkedArray) -> list[tuple[Link, ...]]:
    """Each span's links as (trace_id, span_id) pairs; the shared empty tuple for the many without."""
    pairs: list[tuple[Link, ...]] = []
    for chunk in column.chunks:
        if chunk.null_count:
            chunk = pc.fill_null(chunk, pa.scalar([], chunk.type))
        offsets = chunk.offsets.to_numpy()  # absolute positions in chunk.values, slice offset included
        lengths = np.diff(offsets)
        start = len(pairs)
        pairs.extend([NO_LINKS] * len(chunk))
        linked = np.flatnonzero(lengths)
        if not len(linked):
            continue
        targets = chunk.values
        trace_ids = targets.field("trace_id").to_pylist()
        span_ids = targets.field("span_id").to_pylist()
        for row in linked.tolist():
            begin, end = int(offsets[row]), int(offsets[row + 1])
            pairs[start + row] = tuple(zip(trace_ids[begin:end], span_ids[begin:end], strict=True))
    return pairs


def _has_usage(table: pa.Table) -> pa.ChunkedArray:
    positive = [pc.fill_null(pc.greater(table.column(name), 0), False) for name in TOKEN_COLUMNS]
    return functools.reduce(pc.or_, positive)


@dataclass
class Assembled:
    table: pa.Table  # the rows to write, schema SPANS
    batches: list[tuple[HeldBatch, int]]  # each batch the rows came from, and how many

    def segments(self) -> np.ndarray:
        """The WAL segment of each row of `table`, in order."""
        if not self.batches:
            return np.zeros(0, dtype=np.int64)
        seqs = [batch.wal_seq if batch.wal_seq is not None else 0 for batch, _ in self.batches]
        return np.repeat(np.asarray(seqs, dtype=np.int64), [count for _, count in self.batches])


def assemble(refs: list[SpanRef]) -> Assembled:
    """The table to write: the refs' rows taken from their batches, with the stitching columns from the refs.

    Rows are grouped by the batch they came in (a trace's spans stay together within each batch): one `take`
    per batch, or the batch itself when all its rows are written in order (the common case), and no copy
    of the rest of the columns until the Parquet writer reads them. Each ref is read once (refs held for
    a while are no longer in the CPU's caches: one pass over them, not one per column)."""
    if not refs:
        return Assembled(SPANS.empty_table(), [])
    groups: dict[int, list[tuple]] = {}  # id(HeldBatch) -> (batch, index, *stitching columns) of its refs
    for row in map(_ASSEMBLY_FIELDS, refs):
        if row[0] is None:
            raise ValueError("a span ref made without a batch cannot be written")
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


_ASSEMBLY_FIELDS = attrgetter("batch", "index", *STITCH_OUTPUT)


def row_table(refs: list[SpanRef], names: tuple[str, ...]) -> pa.Table:
    """The columns `names` of each ref's row as one table, in the refs' order (one `take` per batch): what
    live counting reads of a batch of spans, as columns rather than Python values."""
    if not refs:
        return SPANS.empty_table().select(list(names))
    batches = list(map(_BATCH, refs))
    keys = np.fromiter(map(id, batches), dtype=np.int64, count=len(refs))
    if (keys == id(None)).any():
        raise ValueError("a span ref made without a batch has no row to read")
    rows = np.fromiter(map(_INDEX, refs), dtype=np.int64, count=len(refs))
    distinct, first, batch_of = np.unique(keys, return_index=True, return_inverse=True)
    if len(distinct) == 1:
        return batches[0].table.select(list(names)).take(pa.array(rows)).combine_chunks()
    order = np.argsort(batch_of.reshape(-1), kind="stable")  # the refs grouped by batch, in order within each
    ends = np.cumsum(np.bincount(batch_of.reshape(-1), minlength=len(distinct)))
    parts = [
        batches[first[b]].table.select(list(names)).take(pa.array(rows[order[end - count : end]]))
        for b, (end, count) in enumerate(zip(ends.tolist(), np.diff(ends, prepend=0).tolist(), strict=True))
    ]
    back = np.empty_like(order)
    back[order] = np.arange(len(order))
    table = pa.concat_tables(parts).take(pa.array(back))  # back to the refs' order
    return table.combine_chunks()


_BATCH = attrgetter("batch")
_INDEX = attrgetter("index")


def pricing_model(table: pa.Table) -> pa.ChunkedArray:
    """The model a call is priced and labelled by: its response model, else (null or empty) its request model
    (`response_model or request_model`)."""
    response = table.column("response_model")
    answered = pc.fill_null(pc.not_equal(response, ""), False)
    return pc.if_else(answered, response, table.column("request_model"))
