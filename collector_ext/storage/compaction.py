"""Compaction and retention of a dataset (local or s3://): `collector-ext compact`.

Receivers write one small file per flush per writer; a month of them makes every query open thousands of
files. The compactor merges each day's live files (layout.py) into large ones, as Tempo's and Loki's
compactors do, and drops whole days past the retention:

1. per table and day (days before today UTC by default: today's partition still grows), the live files are
   grouped in path order into outputs of at most `target_bytes` (a file already that large stays);
2. each group is read, its rows concatenated in path and row order (the analyzer's own order, so ties in
   its de-duplication of spans resolve the same way) into the current schema (columns an older version
   lacked are NULL, as the analyzer reads them), and written as ONE file `compacted@<UTC>-<random>.parquet`
   whose footer lists every name it replaces, the names its compacted inputs replaced included (so the
   rule stays true once those are deleted);
3. replaced files are deleted only once the file replacing them is older than the grace period, so a
   reader that listed the inputs before the merge appeared still finds them (Tempo's
   `compacted_block_retention`). With grace 0 they are deleted at once (a reader may then fail and retry,
   never count twice).

Crash safety: a crash before step 2's file is complete leaves nothing (a local temporary file of the
compactor is removed at its next run; an upload never completed is not an object); a crash after it
leaves inputs the rule already hides, deleted by the next run. Running it again changes nothing more:
idempotent. Receivers keep writing meanwhile: a file that appears after the listing is simply live, and
merged by a later run.

Retention: `retention_days` N keeps today and the N-1 days before (UTC); every older day partition of
every table is removed whole. A query running at that moment over that day may fail (and be retried); it
never answers from part of a day, which is gone or not.

One compactor at a time per dataset: a flock on `_locks/compactor.lock` locally, a lease object on an
object store (writer_lock.py says what a lease does and does not detect); run it as a CronJob.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import structlog

from collector_ext.schema import TABLES
from collector_ext.storage import layout
from collector_ext.storage.dataset_files import parquet_bytes
from collector_ext.storage.stores import LocalStore, ObjectStore, StoredFile

log = structlog.get_logger("agentmeter.compactor")

NAME_TIME_FORMAT = "%Y%m%dT%H%M%SZ"
DEFAULT_TARGET_BYTES = 128 << 20  # merged in memory: a few times this at most
DEFAULT_GRACE_SECONDS = 3600.0


@dataclass
class CompactionResult:
    partitions: int = 0  # day partitions merged (any table)
    files_merged: int = 0  # live files that went into a merged file
    files_written: int = 0  # merged files written
    files_deleted: int = 0  # replaced files removed after the grace period
    files_unreadable: list[str] = field(default_factory=list)  # left live, as the analyzer names them
    days_dropped: list[str] = field(default_factory=list)  # partitions removed by retention (table/date)


def compacted_name(now: datetime) -> str:
    return f"{layout.COMPACTED_PREFIX}{now.astimezone(UTC).strftime(NAME_TIME_FORMAT)}-{secrets.token_hex(4)}.parquet"


def written_at(name: str) -> datetime | None:
    """When a compacted file was written (from its name: the same on every store)."""
    stamp = name[len(layout.COMPACTED_PREFIX) :].split("-", 1)[0]
    try:
        return datetime.strptime(stamp, NAME_TIME_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return None


def _groups(files: list[StoredFile], target_bytes: int) -> list[list[StoredFile]]:
    """Consecutive runs of files (path order) of at most target_bytes together; only runs of 2 or more."""
    groups: list[list[StoredFile]] = []
    current: list[StoredFile] = []
    size = 0
    for file in files:
        if current and size + file.size > target_bytes:
            groups.append(current)
            current, size = [], 0
        current.append(file)
        size += file.size
    groups.append(current)
    return [g for g in groups if len(g) >= 2]


def _source(store: LocalStore | ObjectStore, file: StoredFile) -> Path | pa.BufferReader:
    """What to parse: a local path, or the whole object (read first: a store that cannot be reached raises
    here, never taken for a damaged file)."""
    if isinstance(store, LocalStore):
        return store.path(file.relative)
    return pa.BufferReader(store.read_bytes(file.relative))


def _in_schema(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """`table` with exactly `schema`'s columns: a column an older file lacks is NULL."""
    columns = [
        table.column(f.name) if f.name in table.column_names else pa.nulls(table.num_rows, f.type) for f in schema
    ]
    return pa.Table.from_arrays(columns, schema=schema)


class Compactor:
    def __init__(
        self,
        store: LocalStore | ObjectStore,
        *,
        grace_seconds: float = DEFAULT_GRACE_SECONDS,
        target_bytes: int = DEFAULT_TARGET_BYTES,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.grace = timedelta(seconds=grace_seconds)
        self.target_bytes = target_bytes
        self.clock = clock

    def run(self, through: date | None = None, retention_days: int | None = None) -> CompactionResult:
        """Retention first (nothing is merged that is about to go), then compaction of every day up to
        `through` (default: yesterday UTC), then the deletion of replaced files past the grace period."""
        result = CompactionResult()
        today = self.clock().astimezone(UTC).date()
        if retention_days is not None:
            self.drop_expired(today - timedelta(days=retention_days - 1), result)
        last = through if through is not None else today - timedelta(days=1)
        self._remove_own_temporary_files()
        listing = self.store.list_files(TABLES)
        for partition in layout.partitions(self.store, listing):
            if date.fromisoformat(partition.date) <= last:
                self._merge(partition, result)
        # listed again: the files merged just now are replaced too (deleted at once with grace 0)
        for partition in layout.partitions(self.store, self.store.list_files(TABLES)):
            self._delete_replaced(partition, result)
        return result

    def drop_expired(self, oldest_kept: date, result: CompactionResult) -> None:
        for table in TABLES:
            for day in self.store.list_dates(table):
                if date.fromisoformat(day) < oldest_kept:
                    self.store.remove_partition(table, day)
                    result.days_dropped.append(f"{table}/date={day}")
                    log.info("day past the retention removed", table=table, date=day)

    def _remove_own_temporary_files(self) -> None:
        if isinstance(self.store, LocalStore):  # a merge cut short by a crash (an upload never completes)
            for table in TABLES:
                for path in (self.store.root / table).glob(f"date=*/.{layout.COMPACTED_PREFIX}*.tmp"):
                    path.unlink(missing_ok=True)

    def _merge(self, partition: layout.Partition, result: CompactionResult) -> None:
        schema, _ = TABLES[partition.table]
        merged_any = False
        for group in _groups(partition.live, self.target_bytes):
            tables, names = [], []
            for file in group:
                source = _source(self.store, file)
                try:
                    tables.append(_in_schema(pq.read_table(source), schema))
                except (pa.ArrowException, OSError) as err:
                    if isinstance(err, OSError) and err.errno is not None:
                        raise  # the OS failed, not the file: nothing is written, the next run retries
                    result.files_unreadable.append(file.relative)
                    log.error("unreadable file left as it is", file=self.store.describe(file.relative), error=str(err))
                    continue
                names.append(file.name)
                if layout.is_compacted(file.name):  # what it replaced stays replaced once it is deleted
                    names.extend(layout.replaces_of(self.store, file))
            if len(tables) < 2:
                continue
            merged = pa.concat_tables(tables)
            name = compacted_name(self.clock())
            replaces = json.dumps(sorted(set(names))).encode()
            data = parquet_bytes(partition.table, merged, {layout.REPLACES_KEY: replaces})
            self.store.put(f"{partition.table}/date={partition.date}/{name}", data)
            log.info(
                "files merged", table=partition.table, date=partition.date, inputs=len(tables), rows=merged.num_rows
            )
            result.files_merged += len(tables)
            result.files_written += 1
            merged_any = True
        result.partitions += merged_any

    def _delete_replaced(self, partition: layout.Partition, result: CompactionResult) -> None:
        if not partition.replaced:
            return
        now = self.clock()
        # a replaced file goes once EVERY live compacted file that lists it is past the grace period
        youngest: dict[str, datetime] = {}
        for file in partition.live:
            if layout.is_compacted(file.name):
                at = written_at(file.name) or now
                for name in layout.replaces_of(self.store, file):
                    youngest[name] = max(youngest.get(name, at), at)
        for file in partition.replaced:
            since = youngest.get(file.name)
            if since is not None and now - since >= self.grace:
                self.store.delete(file.relative)
                result.files_deleted += 1
