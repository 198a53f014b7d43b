"""One durable batch writer: WAL -> hold -> Parquet -> retire, shared by the span pipeline and GPU metrics.

The OpenTelemetry SDK has one BatchProcessor that its span and log processors share; here one writer does
for every table what makes "acknowledged" mean "kept":

    append(payload, rows)   the request is in the write-ahead log (fsync per policy) before the caller
                            acknowledges it; its rows are *outstanding* in that WAL segment
    stage(items)            rows ready for Parquet (the spans of finished traces, GPU samples at once)
    release(segments)       rows that will never be written (the keep rule, a span sent again)
    flusher thread          every tick: the owner's `on_tick` (the span pipeline hands on its due traces),
                            then, when `max_rows` are staged or the oldest waited `max_seconds`, one
                            Parquet file per date partition; then the WAL segments whose rows are all
                            written or released are deleted

Back-pressure: `append` refuses (the receiver's retryable ReceiverError: UNAVAILABLE + RetryInfo, HTTP 503)
when the WAL holds more than `max_pending_bytes` not yet in Parquet, when free disk is below
`min_free_disk_bytes`, and when the WAL itself cannot be written (errors.from_exception: ENOSPC and EDQUOT as DISK_FULL; EMFILE,
ENFILE, EIO and the rest as STORAGE_UNAVAILABLE): never INTERNAL, never an unbounded queue. Near the limit the
flusher writes staged rows early.

A failed write of any kind (an OSError, an Arrow error, too many open files, a bug in building the table)
discards nothing: the rows stay staged, in the order they came, and the next attempt retries them; the WAL
still holds them, so even a crash now loses nothing. When the staged rows span several dates, each date's
file is written on its own: a date written before a failure is never written again (no duplicates), the
dates after it are retried, each under the file name it was given the first time (a PUT to an object
store whose answer was lost is overwritten by the retry with the same rows, never doubled).

Replay (at start, before anything is accepted): `records()` yields what the WAL holds; `written_keys()`
answers which of those rows already are in this writer's Parquet files (a crash between a file's rename and
the segment's deletion): from the Parquet sequence number recorded in the oldest segment's header onwards,
or every file of this writer in the replayed rows' date partitions when a header cannot be trusted. A
damaged file found there is quarantined (dataset_files.py), so its rows are written again from the WAL.
"""

from __future__ import annotations

import shutil
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import numpy as np
import pyarrow as pa
import structlog

from collector_ext import errors
from collector_ext.errors import ErrorKind, ReceiverError
from collector_ext.storage.dataset_files import DatasetFiles
from collector_ext.storage.wal import WalError, WriteAheadLog

log = structlog.get_logger("agentmeter.writer")

T = TypeVar("T")
SEGMENT_HEADER = struct.Struct("<Q")  # each WAL segment: this writer's next Parquet seq when it was opened
WRITE_EARLY_AT = 0.75  # share of max_pending_bytes past which staged rows are written without waiting
DISK_CHECK_SECONDS = 1.0  # statvfs at most once a second
MAX_RETRY_WAIT_SECONDS = 30.0  # longest back-off between two attempts after failed writes
LOG_EVERY_SECONDS = 10.0  # a refusing WAL says so at most this often


@dataclass
class Part:
    """Rows ready for Parquet: a table and, per row, the WAL segment the row came from. Once split by date,
    `date` and `seq` name its file: a retry after a failed write writes the same rows under the same name
    (on an object store, an upload whose answer was lost is then replaced, not doubled)."""

    table: pa.Table
    segments: np.ndarray  # int64, one per row of `table`
    date: str | None = None
    seq: int | None = None


@dataclass(frozen=True)
class WriterLimits:
    max_pending_bytes: int
    min_free_disk_bytes: int
    retry_after_s: float


@dataclass
class WriterSnapshot:
    """The writer's figures; receiver/telemetry.py exports them labelled with `pipeline`."""

    pipeline: str
    wal_bytes: int = 0
    wal_segments: int = 0
    rows_buffered: int = 0  # staged, and kept after failed writes: waiting for the next Parquet file
    rows_written: int = 0
    parquet_files: int = 0
    parquet_write_failures: int = 0
    wal_append_failures: int = 0
    wal_corrupt_records: int = 0
    refusals_pending: int = 0  # appends refused: the WAL holds max_pending_bytes not yet in Parquet
    refusals_disk: int = 0  # appends refused: free disk below the minimum


@dataclass
class _Counts:
    rows_written: int = 0
    parquet_files: int = 0
    parquet_write_failures: int = 0
    wal_append_failures: int = 0
    refusals_pending: int = 0
    refusals_disk: int = 0
    failed_writes_in_a_row: int = 0
    outstanding: Counter[int] = field(default_factory=Counter)  # WAL seq -> rows not yet written or released
    appending: Counter[int] = field(default_factory=Counter)  # in-flight appends by the seq current at start


class DurableBatchWriter(Generic[T]):
    """WAL -> hold -> Parquet -> retire for one table of the dataset (see the module docstring).

    `to_part` turns staged items into the table to write and each row's WAL segment; it runs on the
    flusher thread, outside the writer's lock.
    """

    def __init__(
        self,
        *,
        pipeline: str,
        table: str,
        wal: WriteAheadLog,
        files: DatasetFiles,
        to_part: Callable[[list[T]], Part],
        limits: WriterLimits,
        max_rows: int,
        max_seconds: float,
        tick_seconds: float,
        on_tick: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.pipeline = pipeline
        self.table = table
        self.wal = wal
        self.files = files
        self.limits = limits
        self.max_rows = max_rows
        self.max_seconds = max_seconds
        self.clock = clock
        self._to_part = to_part
        self._tick_seconds = tick_seconds
        self._on_tick = on_tick
        self._lock = threading.Lock()  # guards staged items, kept parts and the counts
        self._write_lock = threading.Lock()  # one Parquet write (and retirement) at a time
        self._staged: list[T] = []
        self._kept: list[Part] = []  # rows of failed writes, retried first
        self._oldest: float | None = None  # when the oldest row waiting for Parquet was staged
        self._counts = _Counts()
        self._disk_checked_at = -DISK_CHECK_SECONDS
        self._disk_ok = True
        self._next_attempt = 0.0
        self._quiet_until = 0.0  # no WAL failure log before this (clock)
        self._stop = threading.Event()
        self._flusher: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> None:
        self._flusher = threading.Thread(target=self._flush_loop, name=f"{self.pipeline}-writer", daemon=True)
        self._flusher.start()

    def stop_flusher(self) -> None:
        self._stop.set()
        if self._flusher is not None:
            self._flusher.join(timeout=60)

    def close(self) -> bool:
        """Stop the flusher, write everything staged, close and retire the WAL. Returns False when rows could
        not be written (they stay in the WAL and are replayed at the next start)."""
        self.stop_flusher()
        complete = True
        try:
            self.write_due(force=True)
        except Exception:
            log.exception("writing the last rows failed; the write-ahead log keeps them for the next start")
            complete = False
        self.wal.close()
        self.retire()
        return complete

    # -- accepting ---------------------------------------------------------------------------------
    def check_capacity(self) -> None:
        """Raise the retryable ReceiverError when the WAL holds too much not yet in Parquet or the disk is full."""
        limits = self.limits
        pending = self.wal.bytes_on_disk
        if pending > limits.max_pending_bytes:
            with self._lock:
                self._counts.refusals_pending += 1
            raise ReceiverError(
                ErrorKind.OVERLOADED,
                f"receiver cannot take more data now: {pending // (1 << 20)} MiB of {self.pipeline} not yet "
                "written to Parquet",
                limits.retry_after_s,
            )
        now = self.clock()
        if now - self._disk_checked_at >= DISK_CHECK_SECONDS:
            self._disk_checked_at = now
            self._disk_ok = shutil.disk_usage(self.wal.directory).free >= limits.min_free_disk_bytes
        if not self._disk_ok:
            with self._lock:
                self._counts.refusals_disk += 1
            raise ReceiverError(
                ErrorKind.DISK_FULL, "receiver cannot take more data now: its disk is almost full", limits.retry_after_s
            )

    def append(self, *parts: bytes, rows: int) -> int:
        """Make one request durable in the WAL (the concatenation of `parts`); its `rows` are outstanding in the
        returned segment until staged and written, or released. Raises the retryable ReceiverError."""
        self.check_capacity()
        # While this append is in flight its segment has no outstanding count yet: keep retirement away from
        # every segment it could land in (the current one at start, or a later one after a rotation).
        with self._lock:
            start_seq = self.wal.current_seq
            self._counts.appending[start_seq] += 1
        try:
            seq = self.wal.append(*parts)
            with self._lock:
                self._counts.outstanding[seq] += rows
            return seq
        except WalError as err:
            now = self.clock()
            with self._lock:
                self._counts.wal_append_failures += 1
                say = now >= self._quiet_until
                if say:
                    self._quiet_until = now + LOG_EVERY_SECONDS
            if say:  # once in a while, not once per refused request
                log.error(
                    "write-ahead log cannot be written; requests are refused (retryable) until it can",
                    pipeline=self.pipeline,
                    error=err.strerror,
                    refused_so_far=self._counts.wal_append_failures,
                )
            raise errors.from_exception(err) from err  # the one errno -> kind mapping (errors.py)
        finally:
            with self._lock:
                appending = self._counts.appending
                appending[start_seq] -= 1
                if not appending[start_seq]:
                    del appending[start_seq]

    def hold_replayed(self, seq: int, rows: int) -> None:
        """Rows replayed from WAL segment `seq` are outstanding there (replay: nothing is appended)."""
        with self._lock:
            self._counts.outstanding[seq] += rows

    def release(self, segments: Counter[int]) -> None:
        """Rows (counted per WAL segment) that will never be written: their segments may retire without them."""
        if not segments:
            return
        with self._lock:
            self._counts.outstanding.subtract(segments)

    def stage(self, items: list[T]) -> None:
        """Rows ready for the next Parquet file."""
        if not items:
            return
        with self._lock:
            if self._oldest is None:
                self._oldest = self.clock()
            self._staged.extend(items)

    # -- writing -----------------------------------------------------------------------------------
    def write_due(self, force: bool = False) -> int:
        """Write the staged rows if a file is due (or `force`): one file per date partition, then retire.
        Returns the rows written; raises what the write raised (the rows not written stay staged)."""
        with self._write_lock:
            with self._lock:
                waiting = len(self._staged) + sum(part.table.num_rows for part in self._kept)
                due = waiting >= self.max_rows or (
                    self._oldest is not None and self.clock() - self._oldest >= self.max_seconds
                )
                if not waiting or not (due or force or self._near_limit()):
                    return 0
                items, self._staged = self._staged, []
                kept, self._kept = self._kept, []
            written = self._write(kept, items)
        if written:
            self.wal.rotate()  # close the current segment so that its records can be retired once written
        self.retire()
        return written

    def _near_limit(self) -> bool:
        return self.wal.bytes_on_disk >= WRITE_EARLY_AT * self.limits.max_pending_bytes

    def _write(self, kept: list[Part], items: list[T]) -> int:
        """Under the write lock: write `kept` parts (each again under its own name), then the new `items`
        date by date; what is not written goes back (kept parts first, in order) and the failure is raised."""
        try:
            new = self._by_date(self._to_part(items)) if items else []
        except BaseException:
            self._keep(kept, items)
            raise
        pending = kept + new
        written = 0
        for position, part in enumerate(pending):
            assert part.date is not None and part.seq is not None
            try:
                self.files.write_file(self.table, part.date, part.table, part.seq)
            except BaseException:
                self._keep(pending[position:], [])
                raise
            seqs, counts = np.unique(part.segments, return_counts=True)
            with self._lock:
                self._counts.outstanding.subtract(dict(zip(seqs.tolist(), counts.tolist(), strict=True)))
                self._counts.rows_written += part.table.num_rows
                self._counts.parquet_files += 1
            written += part.table.num_rows
        with self._lock:
            if not self._staged and not self._kept:
                self._oldest = None
            self._counts.failed_writes_in_a_row = 0
        return written

    def _by_date(self, part: Part) -> list[Part]:
        """`part` split by date partition, each with the file sequence number reserved for it."""
        table = self.files.conform(self.table, part.table)
        parts = []
        for date, mask in self.files.date_masks(self.table, table):
            rows, segments = (
                (table, part.segments) if mask is None else (table.filter(mask), part.segments[mask.to_numpy()])
            )
            parts.append(Part(rows, segments, date, self.files.reserve_seq()))
        return parts

    def _keep(self, parts: list[Part], items: list[T]) -> None:
        with self._lock:
            self._kept[:0] = parts
            self._staged[:0] = items
            if self._oldest is None:
                self._oldest = self.clock()
            self._counts.parquet_write_failures += 1
            self._counts.failed_writes_in_a_row += 1

    def retire(self) -> None:
        """Delete the closed WAL segments whose rows are all written or released. The open segment is closed
        first when all its rows are (e.g. only spans sent again, released): it would wait for the next write."""
        with self._lock:
            seq = self.wal.current_seq
            idle = self._counts.outstanding[seq] <= 0 and seq not in self._counts.appending
        if idle and self.wal.current_has_records:
            self.wal.rotate()
        current = self.wal.current_seq
        with self._lock:
            floor = min(self._counts.appending, default=current)
            outstanding = self._counts.outstanding
            done = [seq for seq in self.wal.segments() if seq < min(current, floor) and outstanding[seq] <= 0]
            for seq in done:
                outstanding.pop(seq, None)
        for seq in done:
            self.wal.retire(seq)

    def _flush_loop(self) -> None:
        while not self._stop.wait(self._tick_seconds):
            if self.clock() < self._next_attempt:
                continue
            try:
                if self._on_tick is not None:
                    self._on_tick()
                self.write_due()
            except Exception:  # keep the flusher alive; rows stay staged and the WAL keeps them safe
                with self._lock:
                    failures = self._counts.failed_writes_in_a_row
                wait = min(MAX_RETRY_WAIT_SECONDS, self._tick_seconds * 2 ** min(failures, 16))
                self._next_attempt = self.clock() + wait
                log.exception("writing Parquet failed; rows stay held and are retried", pipeline=self.pipeline)

    # -- replay ------------------------------------------------------------------------------------
    def segment_header(self) -> bytes:
        """The header of each new WAL segment: this writer's next Parquet seq (see written_keys)."""
        return SEGMENT_HEADER.pack(self.files.next_seq)

    def records(self) -> Iterator[tuple[int, bytes]]:
        """Every intact record in the WAL (from before this start), as (segment seq, payload)."""
        return self.wal.replay()

    def written_keys(self, columns: list[str], dates: Iterable[str]) -> set[tuple]:
        """Values of `columns` of the rows already in this writer's files that replayed rows could duplicate:
        files from the Parquet seq the oldest segment's header recorded, in the given date partitions; every
        file of this writer in those partitions when a segment's header cannot be trusted."""
        dates = set(dates)
        if not dates:
            return set()
        first_seq: int | None = None
        for seq in self.wal.segments():
            header = self.wal.header(seq)
            if header is None or len(header) != SEGMENT_HEADER.size:
                log.warning("write-ahead log segment header unreadable; checking every file", segment=seq)
                first_seq = 0
                break
            value = SEGMENT_HEADER.unpack(header)[0]
            first_seq = value if first_seq is None else min(first_seq, value)
        if first_seq is None:
            return set()
        paths = self.files.files_of_writer(self.table, min_seq=first_seq, dates=dates)
        return self.files.read_keys(self.table, columns, paths)

    def finish_replay(self) -> None:
        """The replayed segments are closed; new appends go to a new segment; retire what is done."""
        self.wal.rotate()
        self.retire()

    # -- introspection -----------------------------------------------------------------------------
    def snapshot(self) -> WriterSnapshot:
        with self._lock:
            counts = self._counts
            buffered = len(self._staged) + sum(part.table.num_rows for part in self._kept)
            return WriterSnapshot(
                pipeline=self.pipeline,
                wal_bytes=self.wal.bytes_on_disk,
                wal_segments=len(self.wal.segments()),
                rows_buffered=buffered,
                rows_written=counts.rows_written,
                parquet_files=counts.parquet_files,
                parquet_write_failures=counts.parquet_write_failures,
                wal_append_failures=counts.wal_append_failures,
                wal_corrupt_records=self.wal.corrupt_records,
                refusals_pending=counts.refusals_pending,
                refusals_disk=counts.refusals_disk,
            )

    @property
    def rows_buffered(self) -> int:
        with self._lock:
            return len(self._staged) + sum(part.table.num_rows for part in self._kept)
