"""Atomic, Hive-partitioned Parquet files of one writer in a dataset directory.

Every file is written under a temporary name, fsynced and renamed: a reader never sees half a file.
Names are `<writer-id>-<seq>.parquet`, seq increasing per writer across restarts, so several receivers
can share one dataset directory. Partition values come from our own date formatting of the table's
timestamp column, never from attribute text.

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
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from collector_ext.schema import DICTIONARY_COLUMNS, TABLES, write_schema_file

WRITER_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
ROW_GROUP_ROWS = 65_536
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

    def _highest_existing_seq(self) -> int:
        pattern = re.compile(rf"^{re.escape(self.writer_id)}-(\d+)\.parquet$")
        highest = 0
        for table in TABLES:
            for path in (self.root / table).glob("date=*/*.parquet"):
                match = pattern.match(path.name)
                if match:
                    highest = max(highest, int(match.group(1)))
        return highest

    def files_of_writer(self, table: str, min_seq: int = 0) -> list[Path]:
        """This writer's finished files of a table with seq >= min_seq (used to de-duplicate WAL replays)."""
        pattern = re.compile(rf"^{re.escape(self.writer_id)}-(\d+)\.parquet$")
        found = []
        for path in (self.root / table).glob("date=*/*.parquet"):
            match = pattern.match(path.name)
            if match and int(match.group(1)) >= min_seq:
                found.append(path)
        return sorted(found)

    @property
    def next_seq(self) -> int:
        return self._seq

    def write(self, table_name: str, table: pa.Table) -> list[Path]:
        """Write `table` (already in the table's schema) split by date partition; returns the new files."""
        schema, time_column = TABLES[table_name]
        if table.num_rows == 0:
            return []
        table = plain_columns(table)
        table = table.cast(schema) if table.schema != schema else table
        # the UTC date of each row (a cast: formatting every timestamp as text costs ~30x more)
        dates = table[time_column].cast(pa.date32())
        unique_dates = pc.unique(dates).to_pylist()
        if len(unique_dates) == 1:
            return [self._write_file(table_name, unique_dates[0].isoformat(), table)]
        return [
            self._write_file(table_name, d.isoformat(), table.filter(pc.equal(dates, pa.scalar(d, pa.date32()))))
            for d in unique_dates
        ]

    def _write_file(self, table_name: str, date: str, table: pa.Table) -> Path:
        with self._lock:
            seq = self._seq
            self._seq += 1
        directory = self.root / table_name / f"date={date}"
        make_shared_dirs(directory)
        final = directory / f"{self.writer_id}-{seq:08d}.parquet"
        tmp = directory / f".{final.name}.tmp"
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
        fsync_dir(directory)
        return final
