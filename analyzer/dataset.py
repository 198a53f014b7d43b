"""Opening a dataset: one DuckDB connection with a view per table of the data contract.

Every analyzer command goes through `open_dataset`, so the dataset location rules (`--data`, then
`$AGENTMETER_DATA`, then `./agentmeter-data`) and the missing-dataset error live here once, and so do the
three promises every query relies on:

  * **Every schema version it knows is read** (collector_ext/schema.py's SCHEMA_VERSIONS): each view has the
    current schema's columns whatever version wrote a file; a column an older version lacks reads as NULL.
  * **Damage is contained and said**: a file whose Parquet footer cannot be read (truncated, overwritten),
    written by a schema version this analyzer does not know, or whose columns have other types, is left
    out and named in `Dataset.skipped_files`; the rest of the dataset answers. The check reads footers only
    and is cached by path, size and mtime (a server opens the dataset per request).
  * **Rows are unique by (trace_id, span_id)**: OTLP delivery is at least once (a client retrying after a
    lost answer, a WAL replay, two receivers sharing a writer id), so the same span can be written twice.
    The `spans` view every query reads keeps one copy of each span: the one from the most complete write
    (a trace written whole over one written in parts before it was complete), then the latest
    received_time, then the first file and row (deterministic). Which span ids repeat is known from a cache
    that reads each file once (analyzer/span_copies.py); only the rows of those are read whole, and with
    none the view is the plain scan.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from analyzer.span_copies import span_copies
from collector_ext.schema import SCHEMA_FILE, SCHEMA_VERSIONS, TABLES, read_schema_version

DEFAULT_DATA_DIR = "agentmeter-data"
SCHEMA_VERSION_KEY = b"agentmeter.schema_version"
# What open_dataset left out is logged here as one line (the `analyze` CLI prints it on stderr).
log = logging.getLogger(__name__)


class AnalyzerError(Exception):
    """A user-facing error: the CLI prints its message on one line and exits non-zero."""


@dataclass(frozen=True, slots=True)
class SkippedFile:
    """A Parquet file of the dataset left out of every view, and why."""

    path: str  # relative to the dataset root
    reason: str


@dataclass
class Dataset:
    root: Path
    con: duckdb.DuckDBPyConnection
    skipped_files: tuple[SkippedFile, ...] = ()
    duplicate_span_rows: int = 0  # rows left out of `spans` as copies of a span already there

    def has_rows(self, table: str) -> bool:
        return bool(self.con.execute(f"SELECT count(*) FROM {table}").fetchone()[0])  # noqa: S608 (fixed names)


def skipped_files_warning(skipped: tuple[SkippedFile, ...]) -> str:
    """One line naming what was left out: `warning: skipped 2 unreadable files: a (why), b (why)`."""
    listed = "; ".join(f"{s.path} ({s.reason})" for s in skipped[:3])
    more = f"; and {len(skipped) - 3} more" if len(skipped) > 3 else ""
    noun = "file" if len(skipped) == 1 else "files"
    return f"warning: skipped {len(skipped)} unreadable {noun} of the dataset: {listed}{more}"


def resolve_data_dir(data: Path | None) -> Path:
    if data is not None:
        return data
    return Path(os.environ.get("AGENTMETER_DATA") or DEFAULT_DATA_DIR)


def read_yaml_file(path: Path, what: str) -> Any:
    """A user's YAML file (`what`: "price file", ...); unreadable or invalid is one AnalyzerError line."""
    try:
        return yaml.safe_load(Path(path).read_text())
    except OSError as err:
        raise AnalyzerError(f"cannot read {what} {path}: {err.strerror or err}") from None
    except yaml.YAMLError as err:
        raise AnalyzerError(f"{what} {path} is not valid YAML: {str(err).splitlines()[0]}") from None


def load_sql(name: str) -> str:
    """Queries live as readable SQL files in analyzer/sql/; parameters are bound, never formatted in."""
    return resources.files("analyzer").joinpath("sql", name).read_text()


def open_dataset(data: Path | None = None, *, threads: int | None = None) -> Dataset:
    root = resolve_data_dir(data)
    if not root.is_dir():
        raise AnalyzerError(f"no dataset at {root} (set --data or AGENTMETER_DATA)")
    version = read_schema_version(root)
    if version is None and not (root / "spans").is_dir():
        raise AnalyzerError(f"{root} is not an agentmeter dataset (no {SCHEMA_FILE} and no spans/)")
    if version is not None and version not in SCHEMA_VERSIONS:
        raise AnalyzerError(
            f"{root} has schema {version}, which this analyzer does not know (it reads {', '.join(SCHEMA_VERSIONS)}):"
            " it was written by a newer agentmeter"
        )
    con = duckdb.connect()
    # every query binds the views again: without the cache each bind re-reads every Parquet footer
    con.execute("SET parquet_metadata_cache = true")
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    skipped: list[SkippedFile] = []
    span_files: list[Path] = []
    for table, (schema, _) in TABLES.items():
        files: list[Path] = []
        columns: set[str] = set()
        left_out = len(skipped)
        for path in sorted((root / table).glob("date=*/*.parquet")):
            problem, names = _check_file(path, schema)
            if problem is None:
                files.append(path)
                columns.update(names)
            else:
                skipped.append(SkippedFile(str(path.relative_to(root)), problem))
        pattern = root / table / "date=*" / "*.parquet" if len(skipped) == left_out else None
        spans = table == "spans"
        if spans:
            span_files = files
        _create_view(con, "span_rows" if spans else table, schema, files, columns, pattern=pattern, row_ids=spans)
    duplicates = _install_unique_spans(con, root, span_files)
    con.execute(load_sql("counted_spans.sql"))
    if skipped:
        log.warning(skipped_files_warning(tuple(skipped)))
    return Dataset(root=root, con=con, skipped_files=tuple(skipped), duplicate_span_rows=duplicates)


# (path, size, mtime_ns) -> (problem or None, column names): footers are read once per file version
_FILE_CHECKS: dict[tuple[str, int, int], tuple[str | None, frozenset[str]]] = {}


def _check_file(path: Path, schema: pa.Schema) -> tuple[str | None, frozenset[str]]:
    """(why the file cannot be read, or None; its column names), from its footer only."""
    try:
        stat = path.stat()
    except OSError as err:
        return f"cannot stat: {err.strerror or err}", frozenset()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    known = _FILE_CHECKS.get(key)
    if known is None:
        known = _FILE_CHECKS[key] = _read_footer(path, schema)
    return known


def _read_footer(path: Path, schema: pa.Schema) -> tuple[str | None, frozenset[str]]:
    try:
        file_schema = pq.read_schema(path)
    except (OSError, pa.ArrowException) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        return f"damaged Parquet: {reason}", frozenset()
    version = (file_schema.metadata or {}).get(SCHEMA_VERSION_KEY)
    if version is not None and version.decode(errors="replace") not in SCHEMA_VERSIONS:
        return (
            f"schema {version.decode(errors='replace')}, which this analyzer does not know "
            f"(it reads {', '.join(SCHEMA_VERSIONS)})"
        ), frozenset()
    for field in file_schema:
        wanted = schema.field(field.name) if field.name in schema.names else None
        if wanted is not None and not field.type.equals(wanted.type):
            return f"column {field.name} is {field.type}, not {wanted.type}", frozenset()
    return None, frozenset(file_schema.names)


def _create_view(
    con: duckdb.DuckDBPyConnection,
    view: str,
    schema: pa.Schema,
    files: list[Path],
    columns: set[str],
    *,
    pattern: Path | None,
    row_ids: bool = False,
) -> None:
    """A view of `schema`'s columns over `files` (or `pattern`, their glob, when it matches no other file).

    `row_ids` adds each row's `filename` and `file_row_number` (span_rows: where a copy of a span lies).
    """
    # An empty, correctly typed table: the view of a table without files (every query stays valid), and the
    # DuckDB types of the columns that no file has (an older schema version): NULL of that type.
    con.register(f"_{view}_empty", schema.empty_table())
    if not files:
        ids = ", NULL::VARCHAR AS filename, NULL::BIGINT AS file_row_number" if row_ids else ""
        con.execute(f"CREATE VIEW {view} AS SELECT *{ids} FROM _{view}_empty")
        return
    types = dict(con.execute(f"SELECT column_name, column_type FROM (DESCRIBE _{view}_empty)").fetchall())
    missing = "".join(f", CAST(NULL AS {types[name]}) AS {name}" for name in schema.names if name not in columns)
    # some files left out: name the others (a long list, so only then)
    source = _quote(pattern) if pattern is not None else "[" + ", ".join(_quote(p) for p in files) + "]"
    ids = ", filename = true, file_row_number = true" if row_ids else ""
    con.execute(
        f"CREATE VIEW {view} AS SELECT *{missing} FROM read_parquet({source}, hive_partitioning = true, "
        f"union_by_name = true{ids})"
    )


def _quote(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def _install_unique_spans(con: duckdb.DuckDBPyConnection, root: Path, files: list[Path]) -> int:
    """The `spans` view: span_rows without the extra copies of a span; returns how many rows were left out."""

    def exact(repeated: list[int]) -> list[tuple[str, int]]:  # the rows of repeated span ids -> the copies
        con.register("_repeated_span_hashes", pa.table({"span_hash": pa.array(repeated, pa.uint64())}))
        try:
            rows = con.execute(load_sql("spans_copies.sql")).fetchall()
        finally:
            con.unregister("_repeated_span_hashes")
        return [(str(Path(filename).relative_to(root)), row) for filename, row in rows]

    copies = span_copies(con, root, files, exact)
    if not copies:
        con.execute("CREATE VIEW spans AS SELECT * EXCLUDE (filename, file_row_number) FROM span_rows")
        return 0
    left_out = pa.table(
        {
            "filename": pa.array([str(root / path) for path, _ in copies], pa.string()),
            "file_row_number": pa.array([row for _, row in copies], pa.int64()),
        }
    )
    con.register("_span_copies", left_out)
    con.execute("CREATE TEMP TABLE span_copies AS SELECT * FROM _span_copies")
    con.unregister("_span_copies")
    # Only the files holding a copy are joined against the copies; the filename filters (literals) prune files,
    # so the other files are read as plainly as without copies.
    holding = ", ".join(sorted({_quote(root / path) for path, _ in copies}))
    con.execute(
        f"""CREATE VIEW spans AS
        SELECT * EXCLUDE (filename, file_row_number) FROM span_rows WHERE filename NOT IN ({holding})
        UNION ALL
        SELECT * EXCLUDE (filename, file_row_number)
        FROM (SELECT * FROM span_rows WHERE filename IN ({holding}))
        ANTI JOIN span_copies USING (filename, file_row_number)"""
    )
    return len(copies)
