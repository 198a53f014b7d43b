"""Rendering result rows for people (Rich tables with totals) and machines (JSON, CSV).

Machine formats are written column by column in chunks of rows: a listing of 700 k tasks must not become
700 k dicts and 10 M per-cell calls in Python. `render_result` streams a DuckDB result (`fetchmany`), so
only one chunk is held in Python at a time. The text is exactly what `json.dump(rows, indent=2)` and
`csv.DictWriter` give for the same rows (values made plain by `_plain`); values of other types (lists,
maps) take the per-row path, which is that code itself.
"""

from __future__ import annotations

import csv
import json
import sys
import warnings
from collections.abc import Iterable, Iterator, Sequence
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from itertools import islice
from json.encoder import encode_basestring_ascii
from typing import Any

import duckdb
import pyarrow as pa
from rich.console import Console
from rich.table import Table

CHUNK_ROWS = 50_000
# DuckDB column types whose JSON and CSV text Arrow builds exactly as json and csv do (HUGEINT: decimal(38, 0))
_ARROW_TYPES = frozenset(
    {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT"}
    | {"FLOAT", "DOUBLE", "BOOLEAN", "VARCHAR"}
)
# Types whose JSON and CSV text is built column-wise below; anything else goes through json/csv per row.
# text json writes between quotes as it is: printable ASCII but the quote and the backslash
_PLAIN_JSON_TEXT = r"^[\x20-\x21\x23-\x5b\x5d-\x7e]*$"
_SCALARS = frozenset({str, int, float, bool, type(None)})
_NEEDS_PLAIN = frozenset({datetime, date, Decimal, bytes})


class OutputFormat(StrEnum):
    table = "table"
    json = "json"
    csv = "csv"


def _plain(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, bytes):
        return value.hex()
    return value


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float | Decimal):
        return f"{value:,.4f}" if abs(value) < 1000 else f"{value:,.2f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(_plain(value))


def render(
    rows: Sequence[dict[str, Any]],
    fmt: OutputFormat,
    *,
    title: str | None = None,
    totals: Sequence[str] = (),
    columns: Sequence[str] | None = None,
    width: int | None = None,
) -> None:
    """Print rows; `totals` names numeric columns summed in a footer of the table format.

    `width`: the table format's console width (default: the terminal's; wide tables piped to a file
    or another process need more than the 80 columns Rich assumes there)."""
    columns = list(columns or (rows[0].keys() if rows else []))
    if fmt is not OutputFormat.table:
        tuples = (tuple(row.get(c) for c in columns) for row in rows)
        _write_machine(fmt, columns, _chunks(tuples))
        return
    table = Table(title=title, show_footer=bool(totals and rows))
    for i, column in enumerate(columns):
        numeric = bool(rows) and isinstance(rows[0].get(column), int | float | Decimal)
        footer = ""
        if column in totals:
            footer = _cell(sum((r.get(column) or 0) for r in rows))
        elif i == 0 and totals:
            footer = "total"
        table.add_column(column, justify="right" if numeric else "left", footer=footer)
    for row in rows:
        table.add_row(*(_cell(row.get(c)) for c in columns))
    Console(width=width).print(table)


def render_result(
    result: duckdb.DuckDBPyConnection,
    fmt: OutputFormat,
    *,
    title: str | None = None,
    totals: Sequence[str] = (),
    columns: Sequence[str] | None = None,
    width: int | None = None,
) -> None:
    """Print the rows of an executed DuckDB query (`con.execute(sql, params)`), as `render` would print them
    as dicts. `columns`: the result columns to print, in order (default: all). JSON and CSV stream."""
    names = [d[0] for d in result.description]
    if fmt is OutputFormat.table:
        rows = [dict(zip(names, row, strict=True)) for row in result.fetchall()]
        render(rows, fmt, title=title, totals=totals, columns=columns or names, width=width)
        return
    columns = list(columns or names)
    picks = [names.index(c) if c in names else None for c in columns]
    types = [str(d[1]) for d in result.description]
    if columns and None not in picks and set(types) <= _ARROW_TYPES:
        if fmt is OutputFormat.json:
            _write_json_arrow(result, columns, picks)
            return
        if len(columns) > 1:  # (the csv module quotes an empty field when it is a row's only one)
            _write_csv_arrow(result, columns, picks)
            return
    chunks = _fetch_chunks(result)
    if picks != list(range(len(names))):
        chunks = ([tuple(row[i] if i is not None else None for i in picks) for row in chunk] for chunk in chunks)
    _write_machine(fmt, columns, chunks)


def _write_csv_arrow(result: duckdb.DuckDBPyConnection, columns: list[str], picks: list[int]) -> None:
    """CSV of a result whose columns are integers, doubles, booleans and text, built per column in Arrow.
    A batch with a text value that needs quoting (`,` `"` CR LF) goes through the csv module instead."""
    import pyarrow.compute as pc  # here: its import costs every other command 25 ms

    out = sys.stdout
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    with warnings.catch_warnings():  # DuckDB warns that a DB-API result is copied once more: it is small
        warnings.simplefilter("ignore")
        reader = result.to_arrow_reader(CHUNK_ROWS)
    for batch in reader:
        texts = [_csv_texts(batch.column(i)) for i in picks]
        if any(text is None for text in texts):
            writer.writerows(zip(*(batch.column(i).to_pylist() for i in picks), strict=True))
            continue
        lines = pc.binary_join_element_wise(*texts, ",", null_handling="replace", null_replacement="")
        if len(lines):
            out.write("\n".join(lines.to_pylist()) + "\n")


def _write_json_arrow(result: duckdb.DuckDBPyConnection, columns: list[str], picks: list[int]) -> None:
    """JSON of a result whose columns are integers, doubles, booleans and text, built per column in Arrow."""
    import pyarrow.compute as pc

    out = sys.stdout
    keys = [json.dumps(c) for c in columns]
    with warnings.catch_warnings():  # DuckDB warns that a DB-API result is copied once more: it is small
        warnings.simplefilter("ignore")
        reader = result.to_arrow_reader(CHUNK_ROWS)
    first = True
    for batch in reader:
        if not batch.num_rows:
            continue
        parts: list[Any] = []
        for n, (key, i) in enumerate(zip(keys, picks, strict=True)):
            parts += [("  {\n    " if n == 0 else ",\n    ") + key + ": ", _json_texts(batch.column(i))]
        rows = pc.binary_join_element_wise(*parts, "\n  }", "")
        out.write(("[\n" if first else ",\n") + ",\n".join(rows.to_pylist()))
        first = False
    out.write("[]\n" if first else "\n]\n")


def _json_texts(values: pa.Array) -> pa.Array:
    """json's text of each value (NULL: null)."""
    import pyarrow.compute as pc

    kind = values.type
    if pa.types.is_integer(kind) or (pa.types.is_decimal(kind) and kind.scale == 0):
        return pc.fill_null(pc.cast(values, pa.string()), "null")
    if pa.types.is_boolean(kind):
        return pc.fill_null(pc.if_else(values, "true", "false"), "null")
    if pa.types.is_string(kind) and pc.all(pc.match_substring_regex(values, _PLAIN_JSON_TEXT)).as_py() is not False:
        return pc.fill_null(pc.binary_join_element_wise('"', values, '"', ""), "null")
    return pa.array(list(map(_json_scalar, values.to_pylist())), pa.string())  # escapes, floats: json's own rules


def _csv_texts(values: pa.Array) -> pa.Array | None:
    """The csv module's text of each value (NULL stays NULL: an empty field), or None: needs quoting."""
    import pyarrow.compute as pc

    kind = values.type
    if pa.types.is_integer(kind) or (pa.types.is_decimal(kind) and kind.scale == 0):
        return pc.cast(values, pa.string())  # decimal(38, 0) is DuckDB's HUGEINT: a Python int
    if pa.types.is_floating(kind):
        return pa.array([None if v is None else repr(v) for v in values.to_pylist()], pa.string())
    if pa.types.is_boolean(kind):
        return pc.if_else(values, "True", "False")
    if not pa.types.is_string(kind) or pc.any(pc.match_substring_regex(values, '[,"\r\n]')).as_py():
        return None
    return values


def _fetch_chunks(result: duckdb.DuckDBPyConnection) -> Iterator[list[tuple]]:
    while chunk := result.fetchmany(CHUNK_ROWS):
        yield chunk


def _chunks(rows: Iterable[tuple]) -> Iterator[list[tuple]]:
    iterator = iter(rows)
    while chunk := list(islice(iterator, CHUNK_ROWS)):
        yield chunk


def _write_machine(fmt: OutputFormat, columns: list[str], chunks: Iterable[list[tuple]]) -> None:
    out = sys.stdout
    if fmt is OutputFormat.csv:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        for chunk in chunks:
            writer.writerows(zip(*_plain_columns(chunk, len(columns)), strict=True))
        return
    first = True
    for chunk in chunks:
        text = _json_rows(columns, chunk)
        out.write(("[\n" if first else ",\n") + text)
        first = False
    out.write("[]\n" if first else "\n]\n")


def _plain_columns(chunk: list[tuple], width: int) -> list[Sequence[Any]]:
    """The chunk's columns with `_plain` applied where a column holds values that need it."""
    columns: list[Sequence[Any]] = list(zip(*chunk, strict=True)) if chunk else [()] * width
    for i, values in enumerate(columns):
        if not _NEEDS_PLAIN.isdisjoint(set(map(type, values))):
            columns[i] = [_plain(v) for v in values]
    return columns


def _json_rows(columns: list[str], chunk: list[tuple]) -> str:
    """`json.dump(rows, indent=2)`'s text for the rows of one chunk, without the enclosing brackets."""
    plain = _plain_columns(chunk, len(columns))
    if not columns or any(not _SCALARS.issuperset(set(map(type, values))) for values in plain):
        rows = [dict(zip(columns, row, strict=True)) for row in zip(*plain, strict=True)] if columns else chunk
        text = json.dumps([{} for _ in rows] if not columns else rows, indent=2)
        return text[2:-2]  # strip "[\n" and "\n]"
    keys = [json.dumps(c).replace("{", "{{").replace("}", "}}") for c in columns]
    template = "  {{\n" + ",\n".join(f"    {key}: {{}}" for key in keys) + "\n  }}"
    return ",\n".join(map(template.format, *map(_json_column, plain)))


def _json_column(values: Sequence[Any]) -> Sequence[str]:
    types = set(map(type, values))
    if types <= {str}:
        return list(map(encode_basestring_ascii, values))
    if types <= {int}:
        return list(map(int.__repr__, values))
    if types <= {type(None)}:
        return ["null"] * len(values)
    return list(map(_json_scalar, values))


def _json_scalar(value: Any) -> str:
    """json's text for one scalar, as its encoder writes it (ASCII strings, float repr, NaN/Infinity)."""
    if type(value) is str:
        return encode_basestring_ascii(value)
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if type(value) is float:
        if value != value:
            return "NaN"
        if value in (float("inf"), float("-inf")):
            return "Infinity" if value > 0 else "-Infinity"
        return float.__repr__(value)
    return int.__repr__(value)
