"""analyzer/output.py writes JSON and CSV column by column, in chunks, and streams DuckDB results: its text
must stay exactly what `json.dump(rows, indent=2)` and `csv.DictWriter` write for the same rows (the
formats every `analyze ... --format json|csv` promises), for any values, any chunking."""

from __future__ import annotations

import contextlib
import csv
import io
import json
from datetime import UTC, date

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analyzer import output
from analyzer.output import OutputFormat, render, render_result


def reference(rows: list[dict], fmt: OutputFormat, columns: list[str]) -> str:
    """The formats as the standard library writes them (what output.py wrote before it streamed)."""
    buffer = io.StringIO()
    if fmt is OutputFormat.json:
        json.dump([{c: output.plain(r.get(c)) for c in columns} for r in rows], buffer, indent=2)
        buffer.write("\n")
    else:
        writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({c: output.plain(row.get(c)) for c in columns})
    return buffer.getvalue()


def printed(call, *args, **kwargs) -> str:
    with contextlib.redirect_stdout(io.StringIO()) as out:
        call(*args, **kwargs)
    return out.getvalue()


SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(),
    st.text(alphabet=',"\n\r{}é\\ ab'),
    st.binary(max_size=8),
    st.datetimes(timezones=st.just(UTC)),
    st.dates(),
    st.decimals(allow_nan=False, allow_infinity=False, places=6, min_value=-(10**9), max_value=10**9),
)
KEYS = st.text(alphabet='ab{}",\n é', min_size=1, max_size=6)


@st.composite
def tables(draw, values=SCALARS):
    columns = draw(st.lists(KEYS, min_size=1, max_size=5, unique=True))
    # one value type per column, as a query result has (plus NULLs), or mixed: both must match
    kinds = [draw(st.sampled_from(["typed", "mixed"])) for _ in columns]
    typed = {c: draw(values) for c in columns}
    rows = []
    for _ in range(draw(st.integers(min_value=0, max_value=12))):
        row = {}
        for column, kind in zip(columns, kinds, strict=True):
            value = draw(values) if kind == "mixed" else draw(st.sampled_from([typed[column], None]))
            row[column] = value
        rows.append(row)
    return columns, rows


@pytest.mark.parametrize("fmt", [OutputFormat.json, OutputFormat.csv])
@settings(max_examples=150, deadline=None)
@given(table=tables(), chunk=st.integers(min_value=1, max_value=5))
def test_render_writes_exactly_the_standard_formats(
    fmt: OutputFormat, table: tuple[list[str], list[dict]], chunk: int
) -> None:
    columns, rows = table
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(output, "CHUNK_ROWS", chunk)
        assert printed(render, rows, fmt, columns=columns) == reference(rows, fmt, columns)


@pytest.mark.parametrize("fmt", [OutputFormat.json, OutputFormat.csv])
def test_nested_values_and_missing_columns_keep_the_standard_formats(fmt: OutputFormat) -> None:
    rows = [
        {"agent": "planner", "curve": [1.5, 2.0], "labels": {"team": "a"}, "day": date(2026, 11, 2)},
        {"agent": None, "curve": [], "labels": {}, "day": None},
    ]
    columns = ["agent", "curve", "labels", "day", "absent"]
    assert printed(render, rows, fmt, columns=columns) == reference(rows, fmt, columns)
    assert printed(render, [], fmt, columns=columns) == reference([], fmt, columns)


@pytest.mark.parametrize("fmt", [OutputFormat.json, OutputFormat.csv])
def test_a_duckdb_result_streams_in_chunks_as_its_rows_render(fmt: OutputFormat, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(output, "CHUNK_ROWS", 7)
    con = duckdb.connect()
    sql = """
        SELECT i AS n, 'task, "' || i || '"' AS name, i / 8 AS share, i % 3 = 0 AS flag,
               sum(i) OVER () AS total,  -- HUGEINT: an int, as fetchall gives it
               CASE WHEN i % 4 = 0 THEN NULL ELSE (i * 1.25)::DECIMAL(18, 6) END AS cost,
               TIMESTAMPTZ '2026-11-02 10:00:00+00' + i * INTERVAL 1 SECOND AS at,
               '\\x0a\\xff'::BLOB AS raw
        FROM range(30) AS t(i)
        ORDER BY i
    """
    cursor = con.execute(sql)
    names = [d[0] for d in cursor.description]
    rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    assert len(rows) == 30
    columns = ["name", "n", "share", "flag", "total", "cost", "at", "raw", "absent"]
    expected = reference(rows, fmt, columns)
    assert printed(render_result, con.execute(sql), fmt, columns=columns) == expected
    # the default columns: all of them, in the query's order
    assert printed(render_result, con.execute(sql), fmt) == reference(rows, fmt, names)
    empty = con.execute("SELECT 1 AS n WHERE false")
    assert printed(render_result, empty, fmt) == reference([], fmt, ["n"])


@pytest.mark.parametrize("fmt", [OutputFormat.json, OutputFormat.csv])
def test_numbers_and_text_built_in_arrow_are_the_standard_formats(
    fmt: OutputFormat, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Integers (HUGEINT too), doubles (NaN, infinities, tiny and huge), booleans, text and NULLs: built per
    column in Arrow; text that needs quoting (CSV) or escapes (JSON) takes the standard library's path."""
    monkeypatch.setattr(output, "CHUNK_ROWS", 16)
    con = duckdb.connect()
    sql = """
        SELECT i::TINYINT AS tiny, i * 1000000007 AS big, sum(i) OVER (ORDER BY i) AS running,
               CASE i % 5 WHEN 0 THEN 'nan'::DOUBLE WHEN 1 THEN 'inf'::DOUBLE WHEN 2 THEN -1e-7
                          WHEN 3 THEN 1e22 ELSE i / 3 END AS ratio,
               (i / 7)::FLOAT AS single, i % 2 = 0 AS even,
               CASE WHEN i % 6 = 0 THEN NULL WHEN i = 40 THEN 'a, "quoted"' || chr(10) || 'line'
                    WHEN i % 4 = 1 THEN '' ELSE 'agent-' || i || '-é' END AS name,
               CASE WHEN i % 3 = 0 THEN NULL ELSE i END AS sometimes,
               CASE WHEN i = 20 THEN 'back\\slash "q"' || chr(9) WHEN i % 7 = 0 THEN NULL ELSE 'task-' || i END AS plain
        FROM range(50) AS t(i)
        ORDER BY i
    """
    cursor = con.execute(sql)
    names = [d[0] for d in cursor.description]
    rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    assert {row["plain"] for row in rows} >= {'back\\slash "q"\t', None, "task-1"}
    columns = ["name", "running", "tiny", "big", "ratio", "single", "even", "sometimes", "plain"]
    assert printed(render_result, con.execute(sql), fmt, columns=columns) == reference(rows, fmt, columns)
    assert printed(render_result, con.execute(sql), fmt, columns=["plain"]) == reference(rows, fmt, ["plain"])
