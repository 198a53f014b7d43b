"""Which files of a dataset are live: the rule every reader, writer and the compactor honour.

Receivers write small files, `<writer-id>-<seq>.parquet`; the compactor (compaction.py) merges a day's
small files into large ones, `compacted@<UTC time>-<random>.parquet`, whose Parquet footer lists the names
it replaces (key `agentmeter.replaces`, in the same partition). `@` cannot appear in a writer id
(dataset_files.WRITER_ID_RE), so the two kinds of name never collide. The rule, per partition:

    live = every file  -  every name listed by a compacted file of that partition

A compacted file appears atomically, footer included (stores.py), so a reader sees either the inputs (the
merge is not there yet) or the merge and not its inputs: never both, never neither. The inputs are deleted
only after a grace period (`--grace-minutes`, Tempo's `compacted_block_retention`), so a reader that
listed before the merge still finds the files it listed. Merging again is the same rule: a compacted file
listed by a later one is itself replaced, and the names it replaced stay replaced (merging is transitive).

A writer never reuses a listed name (its next sequence number is past every name of its own, replaced
ones included: dataset_files.py), and its WAL replay reads the compacted files that replaced its files.
Footers of compacted files are read once per process (they are immutable, cached by name and size).
"""

from __future__ import annotations

import json
import threading
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from collector_ext.storage.stores import LocalStore, ObjectStore, StoredFile

COMPACTED_PREFIX = "compacted@"
REPLACES_KEY = b"agentmeter.replaces"


def is_compacted(name: str) -> bool:
    return name.startswith(COMPACTED_PREFIX)


@dataclass(frozen=True, slots=True)
class Partition:
    """The files of one table/date partition, split by the rule."""

    table: str
    date: str
    live: list[StoredFile]
    replaced: list[StoredFile]  # still present, listed by a compacted file: deleted after the grace period
    replaced_names: frozenset[str]  # every name a compacted file of the partition lists (present or not)


_REPLACES_CACHE: dict[tuple[str, str, int], tuple[str, ...]] = {}
_CACHE_LOCK = threading.Lock()


def replaces_of(store: LocalStore | ObjectStore, file: StoredFile) -> tuple[str, ...]:
    """The names a compacted file replaces (from its footer; an unreadable footer replaces nothing: the file
    is then a damaged file like any other, and its inputs stay live)."""
    key = (store.location, file.relative, file.size)
    with _CACHE_LOCK:
        known = _REPLACES_CACHE.get(key)
    if known is not None:
        return known
    try:
        metadata = read_footer(store, file).metadata or {}
    except pa.ArrowInvalid:
        return ()
    names = tuple(json.loads(metadata.get(REPLACES_KEY, b"[]")))
    with _CACHE_LOCK:
        _REPLACES_CACHE[key] = names
    return names


def read_footer(store: LocalStore | ObjectStore, file: StoredFile) -> pq.FileMetaData:
    """A file's Parquet footer: a local file's from disk; an object's with ranged reads (the footer only)."""
    if isinstance(store, LocalStore):
        return pq.read_metadata(store.path(file.relative))
    with store.fs.open_input_file(store.key(file.relative)) as handle:
        return pq.read_metadata(handle)


def partitions(store: LocalStore | ObjectStore, files: Iterable[StoredFile]) -> list[Partition]:
    """`files` (a listing) grouped by partition and split into live and replaced, in path order."""
    grouped: dict[tuple[str, str], list[StoredFile]] = defaultdict(list)
    for file in files:
        grouped[(file.table, file.date)].append(file)
    result = []
    for (table, date), members in sorted(grouped.items()):
        replaced_names: set[str] = set()
        for file in members:
            if is_compacted(file.name):
                replaced_names.update(replaces_of(store, file))
        live = [f for f in members if f.name not in replaced_names]
        replaced = [f for f in members if f.name in replaced_names]
        result.append(Partition(table, date, live, replaced, frozenset(replaced_names)))
    return result


def live_files(
    store: LocalStore | ObjectStore, tables: Iterable[str], dates: Iterable[str] | None = None
) -> list[StoredFile]:
    """The live files of `tables` (in the given date partitions; all when None), in path order."""
    found = store.list_files(tables, dates)
    return sorted((f for p in partitions(store, found) for f in p.live), key=lambda f: f.relative)
