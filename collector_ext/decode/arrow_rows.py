"""Span rows (dicts keyed by `schema.SPANS` column names) -> an Arrow table, column by column.

The same values as `pa.Table.from_pylist(rows, schema=SPANS)` (tests/test_arrow_rows.py compares them), about
twice as fast on the receiver's rows (bench/bench_ingest.py): the rows are transposed once in C
(`zip(*map(itemgetter(...), rows))`) instead of one Python lookup per cell, and columns that are all null are
made without looking at their values.

`resource_attributes` (one dict shared by every row of an export request's resource) is dictionary-encoded
(schema DECODED_SPANS): each distinct map is stored once and the rows hold an index. Repeating it per row
would cost rows x resource size, which a client controls (1,000 tiny spans under a resource of 1 MB of
attributes is 1 GB), for as long as the trace buffer holds the spans. Parquet cannot store a dictionary of
maps, so the writer (storage/dataset_files.py) expands the column into the plain map of schema SPANS, one
file's rows at a time.
"""

from __future__ import annotations

from operator import itemgetter

import pyarrow as pa

from collector_ext.schema import SPANS

_ALL_COLUMNS = itemgetter(*SPANS.names)
_SHARED_MAP_COLUMNS = frozenset({"resource_attributes"})
_RESOURCE_POSITION = SPANS.get_field_index("resource_attributes")
# SPANS with the resource map stored once per distinct resource (what decoding makes and the buffer holds)
DECODED_SPANS = SPANS.set(
    _RESOURCE_POSITION,
    pa.field("resource_attributes", pa.dictionary(pa.int32(), SPANS.field(_RESOURCE_POSITION).type)),
)


def _shared_map_column(values: tuple, arrow_type: pa.DictionaryType) -> pa.Array:
    """A column of a few distinct dict objects (or None), each repeated over many rows: each stored once."""
    if values.count(values[0]) == len(values):  # one resource for the whole request (the usual case)
        indices = pa.array([0] * len(values), type=pa.int32())
        return pa.DictionaryArray.from_arrays(indices, pa.array(values[:1], type=arrow_type.value_type))
    position: dict[int, int] = {}  # id(dict) -> index among the distinct ones
    distinct: list = []
    indices_list: list[int] = []
    for value in values:
        key = id(value)
        index = position.get(key)
        if index is None:
            index = position[key] = len(distinct)
            distinct.append(value)
        indices_list.append(index)
    dictionary = pa.array(distinct, type=arrow_type.value_type)
    return pa.DictionaryArray.from_arrays(pa.array(indices_list, type=pa.int32()), dictionary)


def rows_to_table(rows: list[dict], in_schema_order: bool = False) -> pa.Table:
    """`rows` as a table of schema DECODED_SPANS; a key missing from a row is null, as in `Table.from_pylist`.

    `in_schema_order`: the caller guarantees that every row holds exactly the schema's keys, in its order
    (copies of one template, as the decoder's rows are): the values are then read without key lookups."""
    count = len(rows)
    if count == 0:
        return DECODED_SPANS.empty_table()
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
    for field, values in zip(DECODED_SPANS, columns, strict=True):
        if field.name in _SHARED_MAP_COLUMNS:
            arrays.append(_shared_map_column(values, field.type))
        elif values[0] is None and values.count(None) == count:  # (count() compares every value with None)
            arrays.append(pa.nulls(count, field.type))
        else:
            arrays.append(pa.array(values, type=field.type))
    return pa.Table.from_arrays(arrays, schema=DECODED_SPANS)
