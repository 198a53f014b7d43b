"""Span rows (dicts keyed by `schema.SPANS` column names) -> an Arrow table, column by column.

The same table as `pa.Table.from_pylist(rows, schema=SPANS)` (tests/test_arrow_rows.py compares them), about
twice as fast on the receiver's rows (bench/bench_ingest.py): the rows are transposed once in C
(`zip(*map(itemgetter(...), rows))`) instead of one Python lookup per cell, columns that are all null are
made without looking at their values, and `resource_attributes` (one dict shared by every row of an
export request's resource) is converted once per distinct dict and repeated with `take`.
"""

from __future__ import annotations

from operator import itemgetter

import pyarrow as pa

from collector_ext.schema import SPANS

_ALL_COLUMNS = itemgetter(*SPANS.names)
_SHARED_MAP_COLUMNS = frozenset({"resource_attributes"})


def _shared_map_column(values: tuple, arrow_type: pa.DataType) -> pa.Array:
    """A column of a few distinct dict objects, each repeated over many rows: convert each once."""
    if values.count(values[0]) == len(values):  # one resource for the whole request (the usual case)
        return pa.array(values[:1], type=arrow_type).take(pa.array([0] * len(values), type=pa.int32()))
    position: dict[int, int] = {}  # id(dict) -> index among the distinct ones
    distinct: list = []
    indices: list[int] = []
    for value in values:
        key = id(value)
        index = position.get(key)
        if index is None:
            index = position[key] = len(distinct)
            distinct.append(value)
        indices.append(index)
    if len(distinct) == len(values):
        return pa.array(values, type=arrow_type)
    return pa.array(distinct, type=arrow_type).take(pa.array(indices, type=pa.int32()))


def rows_to_table(rows: list[dict], in_schema_order: bool = False) -> pa.Table:
    """`rows` as a table of schema SPANS; a key missing from a row is null, as in `Table.from_pylist`.

    `in_schema_order`: the caller guarantees that every row holds exactly the schema's keys, in its order
    (copies of one template, as the decoder's rows are): the values are then read without key lookups."""
    count = len(rows)
    if count == 0:
        return SPANS.empty_table()
    if in_schema_order:
        columns = list(zip(*map(dict.values, rows), strict=True))
        if len(columns) != len(SPANS):
            raise ValueError(f"rows hold {len(columns)} values, the schema has {len(SPANS)} columns")
    else:
        try:
            columns = list(zip(*map(_ALL_COLUMNS, rows), strict=True))
        except KeyError:  # a row without some column: look each cell up with a default
            columns = [tuple(row.get(name) for row in rows) for name in SPANS.names]
    arrays = []
    for field, values in zip(SPANS, columns, strict=True):
        if values[0] is None and values.count(None) == count:  # (count() compares every value with None)
            arrays.append(pa.nulls(count, field.type))
        elif field.name in _SHARED_MAP_COLUMNS:
            arrays.append(_shared_map_column(values, field.type))
        else:
            arrays.append(pa.array(values, type=field.type))
    return pa.Table.from_arrays(arrays, schema=SPANS)
