"""Rendering result rows for people (Rich tables with totals) and machines (JSON, CSV).

Machine formats are written column by column in chunks of rows: a listing of 700 k tasks must not become
700 k dicts and 10 M per-cell calls in Python. `render_result` streams a DuckDB result (`fetchmany`), so
only one chunk is held in Python at a time. The text is exactly what `json.dump(rows, indent=2)` and
`csv.DictWriter` give for the same rows (values made plain by `plain`); values of other types (lists,
maps) take the per-row path, which is that code itself.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
import sys
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from itertools import islice
from json.encoder import encode_basestring_ascii
from typing import Any

import duckdb
import pyarrow as pa
from rich.console import Console
from rich.markup import escape
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


def plain(value: Any) -> Any:
    """A value as JSON and CSV carry it: ISO times, floats for decimals, hex for bytes."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, bytes):
        return value.hex()
    return value


def plain_tree(value: Any) -> Any:
    """`plain` applied through nested dicts and lists (a task tree)."""
    if isinstance(value, dict):
        return {k: plain_tree(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain_tree(v) for v in value]
    return plain(value)


def _cell(value: Any, column: str = "") -> str:
    if value is None:
        return "-"
    if column.endswith("_usd") and isinstance(value, int | float | Decimal):
        return money(value)
    if isinstance(value, float | Decimal):
        return f"{value:,.4f}" if abs(float(value)) < 1000 else f"{value:,.2f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(plain(value))


def money(value: float | Decimal) -> str:
    """USD for people: cents from $1, four decimals below, at least two significant digits under a cent
    ($0.00014, $0.000041), never an exponent."""
    amount = abs(float(value))
    sign = "-" if float(value) < 0 else ""
    if amount == 0:
        return "$0"
    if amount >= 1:
        return f"{sign}${amount:,.2f}"
    digits = min(24, max(4, 1 - math.floor(math.log10(amount))))
    return f"{sign}${amount:.{digits}f}"


@dataclass(frozen=True)
class TableLayout:
    """How a table fits a terminal. `optional`: columns that may be left out when it is narrow, the first
    to go first (columns whose every value is zero or empty go before any other). `short`: id columns shown
    by their first `short_digits` characters. Ids and money are never cut: a column is shown whole or not."""

    optional: Sequence[str] = ()
    short: Sequence[str] = ()
    short_digits: int = 16
    short_note: str = ""
    times: Sequence[str] = ()  # ISO timestamps shown to the second, in UTC: 2026-11-02 01:48:23


def console_width() -> int | None:
    """The terminal's width, or None when stdout is not a terminal (a pipe or a file has no width)."""
    return shutil.get_terminal_size().columns if sys.stdout.isatty() else None


def render(
    rows: Sequence[dict[str, Any]],
    fmt: OutputFormat,
    *,
    title: str | None = None,
    totals: Sequence[str] = (),
    columns: Sequence[str] | None = None,
    width: int | None = None,
    layout: TableLayout | None = None,
    empty: str | None = None,
) -> None:
    """Print rows; `totals` names numeric columns summed in a footer of the table format (a total of
    values that are all unknown is unknown: `-`).

    `width`: the table format's width (default: the terminal's; when piped, as wide as the table is).
    `empty`: why nothing matched, said on stderr (the caller passes it only then)."""
    columns = list(columns or (rows[0].keys() if rows else []))
    if empty:
        say_empty(empty)
    if fmt is not OutputFormat.table:
        tuples = (tuple(row.get(c) for c in columns) for row in rows)
        _write_machine(fmt, columns, _chunks(tuples))
        return
    if not rows and empty:
        return  # an empty table says nothing the line above does not
    layout = layout or TableLayout()
    cells = {c: [_short(_cell(row.get(c), c), c, layout) for row in rows] for c in columns}
    footers = {c: _footer(rows, c, i, totals) for i, c in enumerate(columns)}
    available = width if width is not None else console_width()
    shown, hidden = _fit(columns, cells, footers, layout, available)
    table = Table(title=title, show_footer=bool(totals and rows))
    for column in shown:
        numeric = bool(rows) and isinstance(rows[0].get(column), int | float | Decimal)
        table.add_column(column, justify="right" if numeric else "left", footer=footers[column], no_wrap=True)
    for i in range(len(rows)):
        table.add_row(*(cells[c][i] for c in shown))
    needed = _table_width(shown, cells, footers)
    console = Console(width=max(needed, available or 0))
    console.print(table)
    notes = []
    if layout.short_note and any(c in layout.short for c in shown):
        notes.append(layout.short_note)
    if hidden:
        notes.append(f"not shown at this width: {', '.join(hidden)} (--format csv or json has every column)")
    for note in notes:
        console.print(f"[dim]{escape(note)}[/dim]")


def _short(text: str, column: str, layout: TableLayout) -> str:
    if column in layout.times and len(text) >= 19:
        return text[:19].replace("T", " ")
    return text[: layout.short_digits] if column in layout.short else text


def _footer(rows: Sequence[dict[str, Any]], column: str, index: int, totals: Sequence[str]) -> str:
    if column in totals:
        values = [r.get(column) for r in rows if r.get(column) is not None]
        return _cell(sum(values), column) if values else "-"
    return "total" if index == 0 and totals else ""


def _column_width(column: str, cells: dict[str, list[str]], footers: dict[str, str]) -> int:
    return max(len(column), len(footers[column]), *(len(text) for text in cells[column])) + 3  # padding, rule


def _table_width(columns: Sequence[str], cells: dict[str, list[str]], footers: dict[str, str]) -> int:
    return 1 + sum(_column_width(c, cells, footers) for c in columns)


def _fit(
    columns: list[str],
    cells: dict[str, list[str]],
    footers: dict[str, str],
    layout: TableLayout,
    available: int | None,
) -> tuple[list[str], list[str]]:
    """The columns shown and those left out so the table fits `available` (None: everything)."""
    shown = list(columns)
    if available is None:
        return shown, []
    blank = [c for c in layout.optional if c in shown and all(t in ("0", "-", "$0", "") for t in cells[c])]
    order = blank + [c for c in layout.optional if c in shown and c not in blank]
    hidden = []
    for column in order:
        if _table_width(shown, cells, footers) <= available:
            break
        shown.remove(column)
        hidden.append(column)
    return shown, hidden


def render_result(
    result: duckdb.DuckDBPyConnection,
    fmt: OutputFormat,
    *,
    title: str | None = None,
    totals: Sequence[str] = (),
    columns: Sequence[str] | None = None,
    width: int | None = None,
    layout: TableLayout | None = None,
) -> int:
    """Print the rows of an executed DuckDB query (`con.execute(sql, params)`), as `render` would print them
    as dicts. `columns`: the result columns to print, in order (default: all). JSON and CSV stream.
    Returns how many rows were printed."""
    names = [d[0] for d in result.description]
    if fmt is OutputFormat.table:
        rows = [dict(zip(names, row, strict=True)) for row in result.fetchall()]
        render(rows, fmt, title=title, totals=totals, columns=columns or names, width=width, layout=layout)
        return len(rows)
    columns = list(columns or names)
    picks = [names.index(c) if c in names else None for c in columns]
    types = [str(d[1]) for d in result.description]
    found = [i for i in picks if i is not None]
    if columns and len(found) == len(picks) and all(t in _ARROW_TYPES or t.startswith("DECIMAL") for t in types):
        if fmt is OutputFormat.json:
            return _write_json_arrow(result, columns, found)
        if len(columns) > 1:  # (the csv module quotes an empty field when it is a row's only one)
            return _write_csv_arrow(result, columns, found)
    chunks = _fetch_chunks(result)
    if picks != list(range(len(names))):
        chunks = ([tuple(row[i] if i is not None else None for i in picks) for row in chunk] for chunk in chunks)
    return _write_machine(fmt, columns, chunks)


def say_empty(reason: str) -> None:
    """Why a query found nothing, on stderr (the output itself stays a valid empty table, [] or header)."""
    sys.stdout.flush()  # what was printed comes first
    Console(stderr=True, soft_wrap=True).print(f"[yellow]{escape(reason)}[/yellow]")


def _write_csv_arrow(result: duckdb.DuckDBPyConnection, columns: list[str], picks: list[int]) -> int:
    """CSV of a result whose columns are integers, doubles, booleans and text, built per column in Arrow.
    A batch with a text value that needs quoting (`,` `"` CR LF) goes through the csv module instead."""
    import pyarrow.compute as pc  # here: its import costs every other command 25 ms

    out = sys.stdout
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    with warnings.catch_warnings():  # DuckDB warns that a DB-API result is copied once more: it is small
        warnings.simplefilter("ignore")
        reader = result.to_arrow_reader(CHUNK_ROWS)
    assert reader is not None  # an executed query has a result
    written = 0
    for batch in reader:
        written += batch.num_rows
        texts = [_csv_texts(batch.column(i)) for i in picks]
        if any(text is None for text in texts):
            writer.writerows(zip(*(_python_values(batch.column(i)) for i in picks), strict=True))
            continue
        lines = pc.binary_join_element_wise(*texts, ",", null_handling="replace", null_replacement="")
        if len(lines):
            out.write("\n".join(lines.to_pylist()) + "\n")
    return written


def _write_json_arrow(result: duckdb.DuckDBPyConnection, columns: list[str], picks: list[int]) -> int:
    """JSON of a result whose columns are integers, doubles, booleans and text, built per column in Arrow."""
    import pyarrow.compute as pc

    out = sys.stdout
    keys = [json.dumps(c) for c in columns]
    with warnings.catch_warnings():  # DuckDB warns that a DB-API result is copied once more: it is small
        warnings.simplefilter("ignore")
        reader = result.to_arrow_reader(CHUNK_ROWS)
    assert reader is not None  # an executed query has a result
    first = True
    written = 0
    for batch in reader:
        if not batch.num_rows:
            continue
        written += batch.num_rows
        parts: list[Any] = []
        for n, (key, i) in enumerate(zip(keys, picks, strict=True)):
            parts += [("  {\n    " if n == 0 else ",\n    ") + key + ": ", _json_texts(batch.column(i))]
        rows = pc.binary_join_element_wise(*parts, "\n  }", "")
        out.write(("[\n" if first else ",\n") + ",\n".join(rows.to_pylist()))
        first = False
    out.write("[]\n" if first else "\n]\n")
    return written


def _json_texts(values: pa.Array) -> pa.Array:
    """json's text of each value (NULL: null)."""
    import pyarrow.compute as pc

    kind = values.type
    if pa.types.is_integer(kind) or (pa.types.is_decimal(kind) and kind.scale == 0):
        return pc.fill_null(pc.cast(values, pa.string()), "null")
    if pa.types.is_boolean(kind):
        return pc.fill_null(pc.if_else(values, "true", "false"), "null")
    if pa.types.is_decimal(kind):  # as `plain` makes them: the float nearest the exact value
        return pa.array(["null" if v is None else _json_scalar(float(v)) for v in values.to_pylist()], pa.string())
    if pa.types.is_string(kind) and pc.all(pc.match_substring_regex(values, _PLAIN_JSON_TEXT)).as_py() is not False:
        return pc.fill_null(pc.binary_join_element_wise('"', values, '"', ""), "null")
    return pa.array(list(map(_json_scalar, values.to_pylist())), pa.string())  # escapes, floats: json's own rules


def _python_values(values: pa.Array) -> list[Any]:
    """A column's values as DuckDB fetches them: HUGEINT (decimal(38, 0) in Arrow) an int, a DECIMAL a float."""
    kind = values.type
    if pa.types.is_decimal(kind):
        return [None if v is None else int(v) if kind.scale == 0 else float(v) for v in values.to_pylist()]
    return values.to_pylist()


def _csv_texts(values: pa.Array) -> pa.Array | None:
    """The csv module's text of each value (NULL stays NULL: an empty field), or None: needs quoting."""
    import pyarrow.compute as pc

    kind = values.type
    if pa.types.is_integer(kind) or (pa.types.is_decimal(kind) and kind.scale == 0):
        return pc.cast(values, pa.string())  # decimal(38, 0) is DuckDB's HUGEINT: a Python int
    if pa.types.is_floating(kind):
        return pa.array([None if v is None else repr(v) for v in values.to_pylist()], pa.string())
    if pa.types.is_decimal(kind):
        return pa.array([None if v is None else repr(float(v)) for v in values.to_pylist()], pa.string())
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


def _write_machine(fmt: OutputFormat, columns: list[str], chunks: Iterable[list[tuple]]) -> int:
    out = sys.stdout
    if fmt is OutputFormat.csv:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        written = 0
        for chunk in chunks:
            written += len(chunk)
            writer.writerows(zip(*_plain_columns(chunk, len(columns)), strict=True))
        return written
    first = True
    written = 0
    for chunk in chunks:
        written += len(chunk)
        text = _json_rows(columns, chunk)
        out.write(("[\n" if first else ",\n") + text)
        first = False
    out.write("[]\n" if first else "\n]\n")
    return written


def _plain_columns(chunk: list[tuple], width: int) -> list[Sequence[Any]]:
    """The chunk's columns with `plain` applied where a column holds values that need it."""
    columns: list[Sequence[Any]] = list(zip(*chunk, strict=True)) if chunk else [()] * width
    for i, values in enumerate(columns):
        if not _NEEDS_PLAIN.isdisjoint(set(map(type, values))):
            columns[i] = [plain(v) for v in values]
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
