"""Opening a dataset: one DuckDB connection with a view per table of the data contract.

Every analyzer command goes through `open_dataset`, so the dataset location rules (`--data`, then
`$AGENTMETER_DATA`, then `./agentmeter-data`; a directory or `s3://BUCKET/PREFIX`, read through a local
copy: analyzer/remote.py) and the missing-dataset error live here once. The views read the live files only
(collector_ext/storage/layout.py: files a compacted file replaces are left out), and DuckDB never installs
or loads an extension by itself (nothing is downloaded at run time).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import yaml

from analyzer.remote import RemoteDatasetError, local_copy, remote_location
from collector_ext.schema import SCHEMA_FILE, SCHEMA_VERSION, TABLES, read_schema_version
from collector_ext.storage import layout
from collector_ext.storage.stores import LocalStore

DEFAULT_DATA_DIR = "agentmeter-data"


class AnalyzerError(Exception):
    """A user-facing error: the CLI prints its message on one line and exits non-zero."""


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

    def has_rows(self, table: str) -> bool:
        row = self.con.execute(f"SELECT count(*) FROM {table}").fetchone()  # noqa: S608 (fixed names)
        return bool(row and row[0])


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
    if version is not None and version != SCHEMA_VERSION:
        raise AnalyzerError(f"{root} has schema {version}; this analyzer reads {SCHEMA_VERSION}")
    # never fetch an extension (httpfs for s3:// paths would come from the internet): only built-in ones
    con = duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
    # every query binds the views again: without the cache each bind re-reads every Parquet footer
    con.execute("SET parquet_metadata_cache = true")
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    for table, (schema, _) in TABLES.items():
        _create_view(con, root, table, schema)
    con.execute(load_sql("counted_spans.sql"))
    return Dataset(root=root, con=con)


def live_paths(root: Path, table: str) -> tuple[list[Path], bool]:
    """The live files of a table (compacted inputs left out), and whether they are all its files."""
    store = LocalStore(root)
    listed = store.list_files([table])
    live = [f for p in layout.partitions(store, listed) for f in p.live]
    return [root / f.relative for f in sorted(live, key=lambda f: f.relative)], len(live) == len(listed)


def _create_view(con: duckdb.DuckDBPyConnection, root: Path, table: str, schema: pa.Schema) -> None:
    files, every_file = live_paths(root, table)
    if files:
        # the glob when every file is live (the common case); else the live files by name
        source = _quote(root / table / "date=*" / "*.parquet") if every_file else f"[{', '.join(map(_quote, files))}]"
        con.execute(
            f"CREATE VIEW {table} AS SELECT * FROM read_parquet({source}, hive_partitioning = true, "
            "union_by_name = true)"
        )
    else:
        # An empty, correctly typed table keeps every query valid on a dataset that has no such files yet.
        con.register(f"_{table}_empty", schema.empty_table())
        con.execute(f"CREATE VIEW {table} AS SELECT * FROM _{table}_empty")


def _quote(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"
