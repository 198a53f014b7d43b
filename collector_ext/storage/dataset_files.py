"""Atomic, Hive-partitioned Parquet files of one writer in a dataset directory.

Every file is written under a temporary name, fsynced and renamed: a reader never sees half a file (a
write that fails removes its temporary file; one cut short by a crash is removed at the writer's next
start). Names are `<writer-id>-<seq>.parquet`, seq increasing per writer across restarts, so several
receivers can share one dataset directory. Partition values come from our own date formatting of the
table's timestamp column, never from attribute text.

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

from collector_ext.schema import DICTIONARY_COLUMNS, TABLES, write_schema_file

log = structlog.get_logger("agentmeter.dataset")

WRITER_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
ROW_GROUP_ROWS = 65_536
QUARANTINE_DIR = "_quarantine"
SHARED_DIR_MODE = 0o2775
SHARED_FILE_MODE = 0o664


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


def make_shared_dirs(path: Path) -> None:
    """Create `path` and its missing parents as group-writable setgid directories (see the module doc).

    Only directories this call creates are chmod-ed: one another writer created is left as it is (changing
    a directory owned by another user would fail, and it already has the mode)."""
    if path.is_dir():
        return
    make_shared_dirs(path.parent)
    try:
        path.mkdir()
    except FileExistsError:
        return  # another writer created it meanwhile
    os.chmod(path, SHARED_DIR_MODE)  # mkdir's mode is masked by the umask; chmod is not


def fsync_dir(path: Path) -> None:
    """Make a rename or a new file in `path` durable (the directory entry itself)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class DatasetFiles:
    """Writes Arrow tables of one writer into `<root>/<table>/date=YYYY-MM-DD/<writer>-<seq>.parquet`."""

    def __init__(self, root: Path, writer_id: str) -> None:
        self.root = Path(root)
        self.writer_id = check_writer_id(writer_id)
        self._lock = threading.Lock()
        make_shared_dirs(self.root)
        write_schema_file(self.root, mode=SHARED_FILE_MODE)
        self._seq = self._highest_existing_seq() + 1
        self.quarantined = 0  # files of this writer moved aside because they could not be read
        self._remove_temporary_files()

    def _remove_temporary_files(self) -> None:
        """Temporary files of this writer left by a crash in the middle of a write: never part of the dataset."""
        for table in TABLES:
            for path in (self.root / table).glob(f"date=*/.{self.writer_id}-*.parquet.tmp"):
                path.unlink(missing_ok=True)

    def _highest_existing_seq(self) -> int:
        pattern = re.compile(rf"^{re.escape(self.writer_id)}-(\d+)\.parquet$")
        highest = 0
        for table in TABLES:
            for path in (self.root / table).glob("date=*/*.parquet"):
                match = pattern.match(path.name)
                if match:
                    highest = max(highest, int(match.group(1)))
        return highest

    def files_of_writer(self, table: str, min_seq: int = 0, dates: Iterable[str] | None = None) -> list[Path]:
        """This writer's finished files of a table with seq >= min_seq, in the given date partitions (all when
        None): what WAL replays are de-duplicated against."""
        pattern = re.compile(rf"^{re.escape(self.writer_id)}-(\d+)\.parquet$")
        partitions = ["date=*"] if dates is None else [f"date={date}" for date in sorted(set(dates))]
        found = []
        for partition in partitions:
            for path in (self.root / table).glob(f"{partition}/*.parquet"):
                match = pattern.match(path.name)
                if match and int(match.group(1)) >= min_seq:
                    found.append(path)
        return sorted(found)

    @property
    def next_seq(self) -> int:
        return self._seq

    def write(self, table_name: str, table: pa.Table) -> list[Path]:
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

    def write_file(self, table_name: str, date: str, table: pa.Table) -> Path:
        """One new file of `table` (all of one date) in that date's partition; returns its path."""
        with self._lock:
            seq = self._seq
            self._seq += 1
        directory = self.root / table_name / f"date={date}"
        make_shared_dirs(directory)
        final = directory / f"{self.writer_id}-{seq:08d}.parquet"
        tmp = directory / f".{final.name}.tmp"
        try:
            pq.write_table(
                table,
                tmp,
                compression="zstd",
                row_group_size=ROW_GROUP_ROWS,
                use_dictionary=DICTIONARY_COLUMNS.get(table_name, True),
            )
            os.chmod(tmp, SHARED_FILE_MODE)
            with open(tmp, "rb") as handle:
                os.fsync(handle.fileno())
            tmp.replace(final)
        except BaseException:
            tmp.unlink(missing_ok=True)  # a partial file is never part of the dataset
            raise
        fsync_dir(directory)
        return final

    def read_keys(self, table_name: str, columns: list[str], paths: Iterable[Path]) -> set[tuple]:
        """The values of `columns` (as tuples) in the given files of this writer; a file that cannot be read
        back is quarantined (its rows are not counted as written)."""
        keys: set[tuple] = set()
        for path in paths:
            try:
                table = pq.read_table(path, columns=columns)
            except (pa.ArrowException, OSError) as err:
                if isinstance(err, OSError) and err.errno is not None:
                    raise  # the OS failed (EMFILE, EIO, ...), not the file: nothing to quarantine
                self.quarantine(table_name, path, str(err))
                continue
            values = [_plain(table.column(name)) for name in columns]
            keys.update(zip(*values, strict=True))
        return keys

    def quarantine(self, table_name: str, path: Path, reason: str) -> Path:
        """Move a damaged file of the dataset to `<root>/_quarantine/<table>/<partition>/`."""
        target = self.root / QUARANTINE_DIR / table_name / path.parent.name / path.name
        make_shared_dirs(target.parent)
        path.replace(target)
        fsync_dir(path.parent)
        self.quarantined += 1
        log.error("damaged Parquet file moved to quarantine", file=str(path), moved_to=str(target), reason=reason)
        return target


def _plain(column: pa.ChunkedArray) -> list:
    """A column as Python values; timestamps as int nanoseconds (as the receiver's rows carry them)."""
    if pa.types.is_timestamp(column.type):
        column = column.cast(pa.int64())
    return column.to_pylist()
