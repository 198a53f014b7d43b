"""Opening a dataset: one DuckDB connection with a view per table of the data contract.

Every analyzer command goes through `open_dataset`, so the dataset location rules (`--data`, then
`$AGENTMETER_DATA`, then `./agentmeter-data`; a directory or `s3://BUCKET/PREFIX`, read through a local
copy: analyzer/remote.py) and the missing-dataset error live here once, and so do the promises every query
relies on:

  * **Live files only** (collector_ext/storage/layout.py): files a compacted file replaces are left out, and
    DuckDB never installs or loads an extension by itself (nothing is downloaded at run time).
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
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import yaml

from analyzer.remote import RemoteDatasetError, local_copy, remote_location
from analyzer.span_copies import Copies, span_copies
from collector_ext.schema import SCHEMA_FILE, SCHEMA_VERSIONS, TABLES, read_schema_version
from collector_ext.storage import layout
from collector_ext.storage.stores import LocalStore

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


def resolve_data_dir(data: Path | str | None) -> Path:
    """The dataset directory to open: `data`, else $AGENTMETER_DATA, else ./agentmeter-data; for
    `s3://BUCKET/PREFIX`, its local copy brought up to date (analyzer/remote.py)."""
    chosen = data if data is not None else (os.environ.get("AGENTMETER_DATA") or DEFAULT_DATA_DIR)
    location = remote_location(chosen)
    if location is None:
        return Path(chosen)
    try:
        return local_copy(location).root
    except RemoteDatasetError as err:
        raise AnalyzerError(str(err)) from None


@dataclass
class Dataset:
    root: Path
    con: duckdb.DuckDBPyConnection
    skipped_files: tuple[SkippedFile, ...] = ()
    duplicate_span_rows: int = 0  # rows left out of `spans` as copies of a span already there

    def has_rows(self, table: str) -> bool:
        row = self.con.execute(f"SELECT count(*) FROM {table}").fetchone()  # noqa: S608 (fixed names)
        return bool(row and row[0])


def skipped_files_warning(skipped: tuple[SkippedFile, ...]) -> str:
    """One line naming what was left out: `warning: skipped 2 unreadable files: a (why), b (why)`."""
    listed = "; ".join(f"{s.path} ({s.reason})" for s in skipped[:3])
    more = f"; and {len(skipped) - 3} more" if len(skipped) > 3 else ""
    noun = "file" if len(skipped) == 1 else "files"
    return f"warning: skipped {len(skipped)} unreadable {noun} of the dataset: {listed}{more}"


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


def open_dataset(data: Path | str | None = None, *, threads: int | None = None) -> Dataset:
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
    # never fetch an extension (httpfs for s3:// paths would come from the internet): only built-in ones
    con = duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
    # every query binds the views again: without the cache each bind re-reads every Parquet footer
    con.execute("SET parquet_metadata_cache = true")
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    skipped: list[SkippedFile] = []
    span_files: list[Path] = []
    rows: dict[Path, int] = {}  # rows of each readable file
    for table, (schema, _) in TABLES.items():
        files: list[Path] = []
        columns: set[str] = set()
        left_out = len(skipped)
        live, every_file = live_paths(root, table)
        for path in live:
            check = _check_file(path, schema)
            if check.problem is None:
                files.append(path)
                columns.update(check.columns)
                rows[path] = check.rows
            else:
                skipped.append(SkippedFile(str(path.relative_to(root)), check.problem))
        # the glob when every file is live and readable (the common case); else the files by name
        pattern = root / table / "date=*" / "*.parquet" if every_file and len(skipped) == left_out else None
        spans = table == "spans"
        if spans:
            span_files = files
        _create_view(con, "span_rows" if spans else table, schema, files, columns, pattern=pattern, row_ids=spans)
    duplicates = _install_unique_spans(con, root, span_files, rows)
    con.execute(load_sql("counted_spans.sql"))
    con.execute(load_sql("idle_spans.sql"))
    if skipped:
        log.warning(skipped_files_warning(tuple(skipped)))
    return Dataset(root=root, con=con, skipped_files=tuple(skipped), duplicate_span_rows=duplicates)


def live_paths(root: Path, table: str) -> tuple[list[Path], bool]:
    """The live files of a table (compacted inputs left out), and whether they are all its files."""
    store = LocalStore(root)
    listed = store.list_files([table])
    live = [f for p in layout.partitions(store, listed) for f in p.live]
    return [root / f.relative for f in sorted(live, key=lambda f: f.relative)], len(live) == len(listed)


@dataclass(frozen=True, slots=True)
class _FileCheck:
    """What a file's footer says: why it cannot be read (None: it can), its columns and rows."""

    problem: str | None
    columns: frozenset[str] = frozenset()
    rows: int = 0


# (path, size, mtime_ns) -> its check: footers are read once per file version
_FILE_CHECKS: dict[tuple[str, int, int], _FileCheck] = {}


def _check_file(path: Path, schema: pa.Schema) -> _FileCheck:
    try:
        stat = path.stat()
    except OSError as err:
        return _FileCheck(f"cannot stat: {err.strerror or err}")
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    known = _FILE_CHECKS.get(key)
    if known is None:
        known = _FILE_CHECKS[key] = _read_footer(path, schema)
    return known


def _read_footer(path: Path, schema: pa.Schema) -> _FileCheck:
    try:
        metadata = pq.read_metadata(path)
        file_schema = metadata.schema.to_arrow_schema()
    except (OSError, pa.ArrowException) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        return _FileCheck(f"damaged Parquet: {reason}")
    version = (file_schema.metadata or {}).get(SCHEMA_VERSION_KEY)
    if version is not None and version.decode(errors="replace") not in SCHEMA_VERSIONS:
        return _FileCheck(
            f"schema {version.decode(errors='replace')}, which this analyzer does not know "
            f"(it reads {', '.join(SCHEMA_VERSIONS)})"
        )
    for field in file_schema:
        wanted = schema.field(field.name) if field.name in schema.names else None
        if wanted is not None and not field.type.equals(wanted.type):
            return _FileCheck(f"column {field.name} is {field.type}, not {wanted.type}")
    return _FileCheck(None, frozenset(file_schema.names), metadata.num_rows)


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


def _install_unique_spans(con: duckdb.DuckDBPyConnection, root: Path, files: list[Path], rows: dict[Path, int]) -> int:
    """The `spans` view: span_rows without the extra copies of a span; returns how many rows were left out."""

    def exact(repeated: list[int]) -> Copies:  # the rows of repeated span ids -> the copies to leave out
        con.register("_repeated_span_hashes", pa.table({"span_hash": pa.array(repeated, pa.uint64())}))
        try:
            found = con.execute(load_sql("spans_copies.sql")).fetchnumpy()
        finally:
            con.unregister("_repeated_span_hashes")
        names, index = np.unique(found["filename"].astype(str), return_inverse=True)
        relative = tuple(str(Path(name).relative_to(root)) for name in names)
        return Copies(relative, index.astype(np.int32), found["file_row_number"].astype(np.int64))

    copies = span_copies(con, root, files, exact)
    if not len(copies):
        con.execute("CREATE VIEW spans AS SELECT * EXCLUDE (filename, file_row_number) FROM span_rows")
        return 0
    # A file whose every row is a copy (a batch written again whole) is left out whole: no join at all. Only
    # the files holding some copies are joined against them; the filename filters (literals) prune files, so
    # the other files are read as plainly as without copies.
    per_file = np.bincount(copies.file, minlength=len(copies.files))
    holders = [root / path for path in copies.files]
    whole = [path for path, count in zip(holders, per_file, strict=True) if count == rows.get(path)]
    partly = [path for path in holders if path not in whole]
    left_out = ", ".join(_quote(path) for path in holders)
    view = f"SELECT * EXCLUDE (filename, file_row_number) FROM span_rows WHERE filename NOT IN ({left_out})"
    if partly:
        names = pa.array([str(path) for path in holders], pa.string())
        partial = pa.table({"filename": pc.take(names, pa.array(copies.file)), "file_row_number": copies.row})
        con.register("_span_copies", partial)
        con.execute(
            "CREATE TEMP TABLE span_copies AS SELECT * FROM _span_copies WHERE filename IN "
            f"({', '.join(_quote(path) for path in partly)})"
        )
        con.unregister("_span_copies")
        view += f"""
        UNION ALL
        SELECT * EXCLUDE (filename, file_row_number)
        FROM (SELECT * FROM span_rows WHERE filename IN ({", ".join(_quote(path) for path in partly)}))
        ANTI JOIN span_copies USING (filename, file_row_number)"""
    con.execute(f"CREATE VIEW spans AS {view}")
    return len(copies)
