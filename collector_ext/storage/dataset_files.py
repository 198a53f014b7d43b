"""Atomic, Hive-partitioned Parquet files of one writer in a dataset directory.

Every file is written under a temporary name, fsynced and renamed: a reader never sees half a file (a
write that fails removes its temporary file; one cut short by a crash is removed at the writer's next
start). Names are `<writer-id>-<seq>.parquet`, seq increasing per writer across restarts, so several
receivers can share one dataset directory. Partition values come from our own date formatting of the
table's timestamp column, never from attribute text.

The dataset may also be a prefix of an S3 bucket (`s3://BUCKET/PREFIX`, stores.py): there a file is one
object, uploaded whole (PutObject, or a multipart upload completed only when whole), and a file whose
upload failed is retried under the SAME name (its sequence number is reserved with the rows), so an upload
that reached the bucket although its answer was lost is replaced by the retry, never doubled. Files merged
by the compactor stay counted as this writer's through the compacted file's list (layout.py).

A file of this writer that cannot be read back (truncated, damaged) is moved to
`<root>/_quarantine/<table>/date=.../` with a log line and a count (`quarantined`), so that one damaged
file never keeps the receiver from starting; the file stays there for the operator.

A dataset is shared by receivers that may run as different users (deploy/: the node DaemonSet must be
uid 0 for the kubelet's socket, the StatefulSet is uid 65532) but always with the dataset's group
(runAsGroup and fsGroup 65532). So every directory a writer creates is group-writable and setgid (2775:
new entries keep the dataset's group) and every file is 0664, whatever the process umask: any writer can
add files to a partition another one created.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterable
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import structlog

from collector_ext.schema import DICTIONARY_COLUMNS, SCHEMA_FILE, TABLES, schema_document, write_schema_file
from collector_ext.storage import layout
from collector_ext.storage.stores import (
    SHARED_DIR_MODE,
    SHARED_FILE_MODE,
    LocalStore,
    ObjectStore,
    StoredFile,
    fsync_dir,
    make_shared_dirs,
    open_store,
)

__all__ = ["SHARED_DIR_MODE", "SHARED_FILE_MODE", "DatasetFiles", "fsync_dir", "make_shared_dirs"]

log = structlog.get_logger("agentmeter.dataset")

WRITER_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
ROW_GROUP_ROWS = 65_536
QUARANTINE_DIR = "_quarantine"


def check_writer_id(writer_id: str) -> str:
    if not WRITER_ID_RE.match(writer_id):
        raise ValueError(
            f"invalid writer id {writer_id!r}: use 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return writer_id


def plain_columns(table: pa.Table) -> pa.Table:
    """The table with every dictionary-encoded column expanded to its value type: Parquet cannot store a
    dictionary of maps, which is how decoding holds `resource_attributes` (decode/arrow_rows.py)."""
    for position, field in enumerate(table.schema):
        if pa.types.is_dictionary(field.type):
            column = table.column(position)
            chunks = [chunk.dictionary.take(chunk.indices) for chunk in column.chunks]
            plain = pa.chunked_array(chunks, type=field.type.value_type)
            table = table.set_column(position, pa.field(field.name, field.type.value_type, field.nullable), plain)
    return table


def parquet_options(table_name: str) -> dict:
    """How every file of a table is written (the receivers' and the compactor's)."""
    return {
        "compression": "zstd",
        "row_group_size": ROW_GROUP_ROWS,
        "use_dictionary": DICTIONARY_COLUMNS.get(table_name, True),
    }


def parquet_bytes(table_name: str, table: pa.Table, metadata: dict[bytes, bytes] | None = None) -> pa.Buffer:
    """A whole Parquet file in memory (an object is uploaded in one piece)."""
    if metadata:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), **metadata})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, **parquet_options(table_name))
    return sink.getvalue()


class DatasetFiles:
    """Writes Arrow tables of one writer into `<root>/<table>/date=YYYY-MM-DD/<writer>-<seq>.parquet`; the
    root is a directory or `s3://BUCKET/PREFIX`."""

    def __init__(self, root: Path | str, writer_id: str, connect: bool = True) -> None:
        """`connect=False`: touch nothing of the store yet (it may not be reachable); `connect()` later."""
        self.store = open_store(root)
        self.root: Path | str = self.store.root if isinstance(self.store, LocalStore) else self.store.location
        self.writer_id = check_writer_id(writer_id)
        self._lock = threading.Lock()
        self._name_re = re.compile(rf"^{re.escape(self.writer_id)}-(\d+)\.parquet$")
        self._seq = 0  # until connected: a lower bound of every seq (a WAL segment header that checks all files)
        self.connected = False
        self.quarantined = 0  # files of this writer moved aside because they could not be read
        if connect:
            self.connect()

    def connect(self) -> None:
        """The first touch of the store: the schema file, this writer's next sequence number (past every name it
        used), its temporary files left by a crash. Raises OSError while the store cannot be reached."""
        if isinstance(self.store, LocalStore):
            make_shared_dirs(self.store.root)
            write_schema_file(self.store.root, mode=SHARED_FILE_MODE)
        else:
            self.store.put(SCHEMA_FILE, schema_document().encode())
        self._seq = self._highest_existing_seq() + 1
        self._remove_temporary_files()
        self.connected = True

    @property
    def local(self) -> bool:
        return isinstance(self.store, LocalStore)

    def _remove_temporary_files(self) -> None:
        """Temporary files of this writer left by a crash in the middle of a write: never part of the dataset.
        (An object store has none: an upload cut short never becomes an object.)"""
        if isinstance(self.store, LocalStore):
            for table in TABLES:
                for path in (self.store.root / table).glob(f"date=*/.{self.writer_id}-*.parquet.tmp"):
                    path.unlink(missing_ok=True)

    def _seq_of(self, name: str) -> int | None:
        match = self._name_re.match(name)
        return int(match.group(1)) if match else None

    def _highest_existing_seq(self) -> int:
        """Past every name of this writer: its files, and the names compacted files list as replaced (a name
        reused would be hidden by the compacted file that lists it)."""
        highest = 0
        for partition in layout.partitions(self.store, self.store.list_files(TABLES)):
            for name in [*(f.name for f in partition.live), *partition.replaced_names]:
                seq = self._seq_of(name)
                if seq is not None:
                    highest = max(highest, seq)
        return highest

    def files_of_writer(self, table: str, min_seq: int = 0, dates: Iterable[str] | None = None) -> list[StoredFile]:
        """The files that hold this writer's rows of a table with seq >= min_seq, in the given date partitions
        (all when None): what WAL replays are de-duplicated against. Its own files, and the compacted files
        that replaced any of them (their other rows are other writers': a superset of keys, which is what a
        de-duplication needs)."""
        found = []
        for partition in layout.partitions(self.store, self.store.list_files([table], dates)):
            for file in partition.live:
                seq = self._seq_of(file.name)
                if (
                    seq is not None
                    and seq >= min_seq
                    or layout.is_compacted(file.name)
                    and any(
                        (seq := self._seq_of(name)) is not None and seq >= min_seq
                        for name in layout.replaces_of(self.store, file)
                    )
                ):
                    found.append(file)
        return sorted(found, key=lambda f: f.relative)

    @property
    def next_seq(self) -> int:
        return self._seq

    def reserve_seq(self) -> int:
        """The sequence number of a file to be written; a retry of that file uses it again."""
        if not self.connected:  # the names this writer used are not known yet: a number could reuse one
            raise OSError(f"{self.store.location} has not been reached yet")
        with self._lock:
            seq = self._seq
            self._seq += 1
            return seq

    def write(self, table_name: str, table: pa.Table) -> list[Path | str]:
        """Write `table` (already in the table's schema) split by date partition; returns the new files."""
        return [self.write_file(table_name, date, part) for date, part in self.by_date(table_name, table)]

    def by_date(self, table_name: str, table: pa.Table) -> list[tuple[str, pa.Table]]:
        """`table` split by the UTC date of the table's time column: (YYYY-MM-DD, its rows), in date order."""
        table = self.conform(table_name, table)
        return [
            (date, table if mask is None else table.filter(mask)) for date, mask in self.date_masks(table_name, table)
        ]

    def conform(self, table_name: str, table: pa.Table) -> pa.Table:
        """`table` in the exact schema of `table_name`: dictionary columns expanded, then a cast when it still
        differs (e.g. in metadata)."""
        schema, _ = TABLES[table_name]
        table = plain_columns(table)
        return table.cast(schema) if table.schema != schema else table

    def date_masks(self, table_name: str, table: pa.Table) -> list[tuple[str, pa.ChunkedArray | None]]:
        """The date partitions of `table`'s rows: (YYYY-MM-DD, boolean mask of its rows, or None for all rows),
        in date order. The date is the UTC date of the table's time column."""
        _, time_column = TABLES[table_name]
        if table.num_rows == 0:
            return []
        # the UTC date of each row (a cast: formatting every timestamp as text costs ~30x more)
        dates = table[time_column].cast(pa.date32())
        unique_dates = sorted(pc.unique(dates).to_pylist())
        if len(unique_dates) == 1:
            return [(unique_dates[0].isoformat(), None)]
        return [(d.isoformat(), pc.equal(dates, pa.scalar(d, pa.date32()))) for d in unique_dates]

    def relative_name(self, table_name: str, date: str, seq: int) -> str:
        return f"{table_name}/date={date}/{self.writer_id}-{seq:08d}.parquet"

    def write_file(self, table_name: str, date: str, table: pa.Table, seq: int | None = None) -> Path | str:
        """One new file of `table` (all of one date) in that date's partition; returns its path (a local
        Path, or the object's s3:// URI). `seq`: the number reserved for these rows (a retry reuses it)."""
        if seq is None:
            seq = self.reserve_seq()
        relative = self.relative_name(table_name, date, seq)
        if isinstance(self.store, ObjectStore):
            self.store.put(relative, parquet_bytes(table_name, table))
            return self.store.describe(relative)
        final = self.store.path(relative)
        directory = final.parent
        make_shared_dirs(directory)
        tmp = directory / f".{final.name}.tmp"
        try:
            pq.write_table(table, tmp, **parquet_options(table_name))
            os.chmod(tmp, SHARED_FILE_MODE)
            with open(tmp, "rb") as handle:
                os.fsync(handle.fileno())
            tmp.replace(final)
        except BaseException:
            tmp.unlink(missing_ok=True)  # a partial file is never part of the dataset
            raise
        fsync_dir(directory)
        return final

    def read_keys(self, table_name: str, columns: list[str], files: Iterable[StoredFile]) -> set[tuple]:
        """The values of `columns` (as tuples) in the given files; a file that cannot be parsed is quarantined
        (its rows are not counted as written). A store that cannot be read (EMFILE, EIO, an unreachable
        bucket) raises: nothing to quarantine."""
        keys: set[tuple] = set()
        for file in files:
            if isinstance(self.store, LocalStore):
                source: Path | pa.BufferReader = self.store.path(file.relative)
            else:
                # the whole object first: a failure to reach the bucket (an OSError without errno, as every
                # pyarrow S3 error) raises here and is never mistaken for a damaged file
                source = pa.BufferReader(self.store.read_bytes(file.relative))
            try:
                table = pq.read_table(source, columns=columns)
            except (pa.ArrowException, OSError) as err:
                if isinstance(err, OSError) and err.errno is not None:
                    raise  # the OS failed (EMFILE, EIO, ...), not the file: nothing to quarantine
                self.quarantine(table_name, file, str(err))
                continue
            values = [_plain(table.column(name)) for name in columns]
            keys.update(zip(*values, strict=True))
        return keys

    def quarantine(self, table_name: str, file: StoredFile, reason: str) -> str:
        """Move a damaged file of the dataset to `<root>/_quarantine/<table>/<partition>/`."""
        target = f"{QUARANTINE_DIR}/{table_name}/date={file.date}/{file.name}"
        self.store.move(file.relative, target)
        self.quarantined += 1
        log.error(
            "damaged Parquet file moved to quarantine",
            file=self.store.describe(file.relative),
            moved_to=self.store.describe(target),
            reason=reason,
        )
        return target


def _plain(column: pa.ChunkedArray) -> list:
    """A column as Python values; timestamps as int nanoseconds (as the receiver's rows carry them)."""
    if pa.types.is_timestamp(column.type):
        column = column.cast(pa.int64())
    return column.to_pylist()
