"""Which rows of the dataset are extra copies of a span, found once per file and remembered between runs.

Rows are unique by (trace_id, span_id) in what the analyzer counts (analyzer/dataset.py), so every open must
know which spans were written twice. Finding that out means looking at every row's span id: at 10 M spans
that costs several times a whole `analyze cost` query. But Parquet files of a dataset never change once
written (they appear by rename; compaction and retention remove them), so the answer is kept in a cache:
the sorted 64-bit hashes of the span ids of every file already seen, which hashes repeat, and which rows
are the copies left out. An open then reads only the files that appeared since (a live dataset gains a few
per minute) and finds their span ids among the old ones by binary search; with none new, nothing is read. A file that disappeared or changed (size, mtime), another DuckDB
version (the hash function), an unreadable cache: everything is read again. The cache is only ever a
shortcut: without a usable cache directory the answer is computed afresh, the same.

Where: $AGENTMETER_CACHE_DIR/agentmeter, else $XDG_CACHE_HOME/agentmeter, else ~/.cache/agentmeter; one file
per dataset (named by a hash of its absolute path), replaced atomically.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np

CACHE_FORMAT = 2
FileKey = tuple[int, int]  # (size, mtime_ns)


@dataclass(frozen=True, slots=True)
class Copies:
    """Rows left out as extra copies of a span: row `row[i]` of file `files[file[i]]` (relative to the root)."""

    files: tuple[str, ...]
    file: np.ndarray  # int32: index into `files`
    row: np.ndarray  # int64: row number within the file

    def __len__(self) -> int:
        return len(self.row)

    @classmethod
    def none(cls) -> Copies:
        return cls((), np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.int64))


ExactPass = Callable[[list[int]], Copies]  # hashes of repeated span ids -> the rows to leave out


@dataclass(frozen=True, slots=True)
class _Seen:
    files: dict[str, FileKey]  # relative path -> key, every file whose span ids are in the stored keys
    repeated: frozenset[int]  # hashes of span ids that occur more than once among them
    copies: Copies  # the exact answer for these files


def span_copies(con: duckdb.DuckDBPyConnection, root: Path, files: list[Path], exact: ExactPass) -> Copies:
    """The rows of `files` (the dataset's readable span files) that are extra copies of a span.

    Which span ids repeat comes from the cache plus the files new since; `exact` then picks, among the rows
    of those span ids, the copies to leave out (analyzer/sql/spans_copies.sql). With no file new since the
    cache was written, its answer stands and nothing is read.
    """
    current = {str(path.relative_to(root)): _file_key(path) for path in files}
    cache = _cache_file(root)
    with contextlib.ExitStack() as stack:
        stored = _open(cache, stack)  # read keys from this very file even if another process replaces it
        seen = _seen(stored, current)
        new = [path for path in files if seen is None or str(path.relative_to(root)) not in seen.files]
        if seen is not None and not new:
            return seen.copies
        keys = stored["keys"] if seen is not None and stored is not None else np.zeros(0, dtype=np.uint64)
    repeated = set(seen.repeated) if seen is not None else set()
    fresh = np.sort(_hashes(con, new))
    repeated.update(int(h) for h in np.unique(fresh[1:][fresh[1:] == fresh[:-1]]))
    if len(keys) and len(fresh):
        at = np.minimum(np.searchsorted(keys, fresh), len(keys) - 1)
        repeated.update(int(h) for h in np.unique(fresh[keys[at] == fresh]))
    keys = np.insert(keys, np.searchsorted(keys, fresh), fresh)  # still sorted: a merge, no sort again
    copies = exact(sorted(repeated)) if repeated else Copies.none()
    if cache is not None:
        _save(cache, current, repeated, copies, keys)
    return copies


def _hashes(con: duckdb.DuckDBPyConnection, files: list[Path]) -> np.ndarray:
    if not files:
        return np.zeros(0, dtype=np.uint64)
    listed = ", ".join("'" + str(path).replace("'", "''") + "'" for path in files)
    return con.execute(f"SELECT hash(span_id) AS h FROM read_parquet([{listed}])").fetchnumpy()["h"]


def _file_key(path: Path) -> FileKey:
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns


def _cache_file(root: Path) -> Path | None:
    base = os.environ.get("AGENTMETER_CACHE_DIR") or os.environ.get("XDG_CACHE_HOME")
    try:
        directory = Path(base) / "agentmeter" if base else Path.home() / ".cache" / "agentmeter"
    except RuntimeError:  # no home directory: no cache
        return None
    name = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:24]
    return directory / f"span-ids-{name}.npz"


def _open(cache: Path | None, stack: contextlib.ExitStack) -> np.lib.npyio.NpzFile | None:
    if cache is None:
        return None
    try:
        return stack.enter_context(np.load(cache))
    except (OSError, ValueError):
        return None


def _seen(stored: np.lib.npyio.NpzFile | None, current: dict[str, FileKey]) -> _Seen | None:
    """What the cache says, if it is of this format and DuckDB and none of its files went away or changed."""
    if stored is None:
        return None
    try:
        manifest = json.loads(bytes(stored["manifest"]).decode())
        if manifest["format"] != CACHE_FORMAT or manifest["duckdb"] != duckdb.__version__:
            return None
        files = {path: (size, mtime) for path, (size, mtime) in manifest["files"].items()}
        repeated = frozenset(int(h) for h in stored["repeated"])
        copies = Copies(tuple(manifest["copy_files"]), stored["copy_file"], stored["copy_row"])
        if len(copies.file) != len(copies.row) or (len(copies.file) and copies.file.max() >= len(copies.files)):
            return None
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return None
    if any(current.get(path) != key for path, key in files.items()):
        return None
    return _Seen(files, repeated, copies)


def _save(cache: Path, files: dict[str, FileKey], repeated: set[int], copies: Copies, keys: np.ndarray) -> None:
    manifest = {
        "format": CACHE_FORMAT,
        "duckdb": duckdb.__version__,
        "files": {path: list(key) for path, key in files.items()},
        "copy_files": list(copies.files),
    }
    tmp = None
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=cache.parent, prefix=".span-ids-", suffix=".npz")
        with os.fdopen(fd, "wb") as out:
            encoded = np.frombuffer(json.dumps(manifest).encode(), dtype=np.uint8)
            np.savez(
                out,
                keys=keys,
                repeated=np.array(sorted(repeated), dtype=np.uint64),
                manifest=encoded,
                copy_file=copies.file,
                copy_row=copies.row,
            )
        os.replace(tmp, cache)
    except OSError:
        # no cache this time (read-only home, full disk): the answer stands, the next open recomputes
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
