"""`--data s3://BUCKET/PREFIX`: the analyzer over a dataset in object storage, with nothing downloaded at
run time but the dataset itself (no DuckDB extension: httpfs would be fetched from the internet).

The dataset's live files (collector_ext/storage/layout.py: compacted inputs left out) are copied through
pyarrow's S3 client (the receivers' client, stores.py: AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, AWS_REGION) into a local cache, `$AGENTMETER_CACHE_DIR` (default
`~/.cache/agentmeter`) `/s3/<bucket>/<prefix>/`, and DuckDB reads that copy with the same views as any
local dataset: the answers are those of a local copy because they are computed from one.

Why a cache and not DuckDB reading the objects directly: dataset files are immutable (a name is written
once; a retry writes the same rows again), so a copy is never stale and each file crosses the network
once per machine: `analyze serve`, notebooks and repeated commands download only the files that are new
since the last run (listing one page per 1000 objects), and files the compactor or the retention removed
are removed from the cache. Opening a dataset reads every file's footer and span ids anyway (dataset.py),
which over a network would be a round trip per file per run. The cost is disk (the dataset's size, zstd
Parquet) and the first run's download; bench/bench_object_store.py measures both.

A file the compactor deletes between the listing and its download (after its grace period) is found
missing: the listing is taken again, bounded.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from collector_ext.schema import SCHEMA_FILE, TABLES
from collector_ext.storage import layout
from collector_ext.storage.stores import ObjectStore, StoredFile, is_object_store

CACHE_ENV = "AGENTMETER_CACHE_DIR"
DOWNLOAD_THREADS = 8
LISTING_ATTEMPTS = 3


class RemoteDatasetError(Exception):
    """The object store cannot be read (one line: the analyzer's AnalyzerError wraps it)."""


@dataclass(frozen=True)
class LocalCopy:
    root: Path  # the local copy, opened like any dataset
    files: int  # live files in the dataset
    downloaded: int  # files fetched by this sync
    downloaded_bytes: int
    removed: int  # cached files no longer live (compacted, dropped by retention)


def remote_location(data: Path | str | None) -> str | None:
    """`s3://...` when `data` names an object store (typer's Path collapses `s3://` into `s3:/`)."""
    if data is None:
        return None
    text = str(data)
    if text.startswith("s3:/") and not text.startswith("s3://"):
        text = "s3://" + text[len("s3:/") :]
    return text if is_object_store(text) else None


def cache_root() -> Path:
    configured = os.environ.get(CACHE_ENV)
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "agentmeter"


def local_copy(location: str, cache_dir: Path | None = None) -> LocalCopy:
    """Bring the cache of `location` up to date with its live files; returns where it is."""
    store = ObjectStore(location)
    root = (cache_dir or cache_root()) / "s3" / store.root
    for attempt in range(LISTING_ATTEMPTS):
        try:
            return _sync(store, root)
        except FileNotFoundError:
            if attempt == LISTING_ATTEMPTS - 1:
                raise RemoteDatasetError(f"{location} kept changing while it was copied; try again") from None
        except OSError as err:
            raise RemoteDatasetError(f"cannot read {location}: {' '.join(str(err).split())}") from None
    raise AssertionError("unreachable")


def _sync(store: ObjectStore, root: Path) -> LocalCopy:
    live = layout.live_files(store, TABLES)
    wanted = {file.relative: file for file in live}
    missing = [file for file in live if not _cached(root / file.relative, file)]
    root.mkdir(parents=True, exist_ok=True)
    if store.exists(SCHEMA_FILE):
        _write_atomically(root / SCHEMA_FILE, bytes(store.read_bytes(SCHEMA_FILE)))
    with ThreadPoolExecutor(DOWNLOAD_THREADS) as pool:
        sizes = list(pool.map(lambda file: _download(store, root, file), missing))
    removed = 0
    for table in TABLES:
        for path in (root / table).glob("date=*/*.parquet"):
            if path.relative_to(root).as_posix() not in wanted:
                path.unlink(missing_ok=True)
                removed += 1
        for directory in (root / table).glob("date=*"):
            if directory.is_dir() and not any(directory.iterdir()):
                directory.rmdir()
    return LocalCopy(root, len(live), len(missing), sum(sizes), removed)


def _cached(path: Path, file: StoredFile) -> bool:
    try:
        return path.stat().st_size == file.size
    except FileNotFoundError:
        return False


def _download(store: ObjectStore, root: Path, file: StoredFile) -> int:
    data = bytes(store.read_bytes(file.relative))  # FileNotFoundError: removed meanwhile, listed again
    _write_atomically(root / file.relative, data)
    return len(data)


def _write_atomically(path: Path, data: bytes) -> None:
    """A reader of the cache (another analyzer process) never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
