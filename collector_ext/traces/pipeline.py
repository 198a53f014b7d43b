"""From an accepted request to durable Parquet, losing nothing and writing nothing twice.

    accept(): WAL append (+ fsync per policy) -> trace buffer -> acknowledged
    flusher thread: due traces -> stitching -> row buffer -> Parquet file (atomic) -> retire WAL segments

The rows held are span refs (span_batch.py): the few fields stitching reads, pointing into the Arrow table
their request was decoded to; the written table is assembled from those tables.

Bookkeeping that makes `kill -9` safe:
- every held row remembers the WAL segment it came from (its batch's `wal_seq`); `_outstanding[seq]` counts
  that segment's rows not yet in a finished Parquet file (or dropped by the keep rule, or replaced by the
  same span sent again); a closed segment at zero is deleted;
- each segment's header records the Parquet sequence number this writer was at when the segment opened;
  on restart the replay reads the span ids of this writer's files from the lowest such number on, and
  skips replayed spans already written (a crash between the Parquet rename and the segment delete).
"""

from __future__ import annotations

import shutil
import struct
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from operator import itemgetter

import pyarrow.parquet as pq
import structlog

from collector_ext.config import MIB, ReceiverConfig
from collector_ext.decode.batch import DecodedBatch, decode_request
from collector_ext.decode.limits import DecodeLimits
from collector_ext.errors import ErrorKind, ReceiverError
from collector_ext.storage.dataset_files import DatasetFiles
from collector_ext.storage.wal import WalError, WriteAheadLog
from collector_ext.traces.live_state import LiveState
from collector_ext.traces.span_refs import assemble, span_refs
from collector_ext.traces.stitching import Stitcher
from collector_ext.traces.trace_buffer import ReadyTrace, TraceBuffer

log = structlog.get_logger("agentmeter.pipeline")

_RECEIVED = struct.Struct("<q")  # each WAL record: received time (ns) | serialized ExportTraceServiceRequest
_SEGMENT_HEADER = struct.Struct("<Q")  # each WAL segment: the next Parquet seq when it was opened


def _segments_of(rows: Iterable[dict]) -> Counter[int]:
    """How many of `rows` came from each WAL segment."""
    return Counter(batch.wal_seq for batch in map(_BATCH, rows))


_BATCH = itemgetter("_batch")


class Overloaded(ReceiverError):
    """The receiver cannot take more now; the client should retry after `retry_after` seconds."""

    def __init__(self, retry_after: float, reason: str, kind: ErrorKind = ErrorKind.OVERLOADED) -> None:
        super().__init__(kind, f"receiver cannot take more data now: {reason}", retry_after)
        self.retry_after = retry_after
        self.reason = reason


@dataclass
class PipelineStats:
    spans_accepted: int = 0
    spans_written: int = 0
    spans_dropped: int = 0  # not kept by the keep rule (e.g. traces with no GenAI span)
    spans_replayed: int = 0
    spans_replay_skipped: int = 0  # already in Parquet before the crash
    parquet_files: int = 0
    traces_written: int = 0
    traces_early: int = 0  # written before they were complete (memory limit, max wait, shutdown)


class Pipeline:
    def __init__(self, config: ReceiverConfig, stitcher: Stitcher, live: LiveState, clock=time.monotonic) -> None:
        self.config = config
        self.stitcher = stitcher
        self.live = live
        self.clock = clock
        self.stats = PipelineStats()
        self.files = DatasetFiles(config.data_dir, config.writer_id)
        self.wal = WriteAheadLog(
            config.wal_path,
            segment_bytes=config.wal_segment_mib * MIB,
            fsync=config.fsync,
            segment_header=lambda: _SEGMENT_HEADER.pack(self.files.next_seq),
        )
        self.buffer = TraceBuffer(config.trace_grace_seconds, config.trace_max_wait_seconds, config.max_held_spans)
        self._lock = threading.Lock()  # guards buffer, outstanding counts and the row buffer
        self._write_lock = threading.Lock()  # one Parquet write at a time
        self._outstanding: Counter[int] = Counter()
        self._appending: Counter[int] = Counter()  # in-flight appends by the segment seq current at their start
        self._rows: list[dict] = []
        self._rows_since = clock()
        self._stop = threading.Event()
        self._flusher: threading.Thread | None = None
        self._disk_checked_at = 0.0
        self._disk_ok = True

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> None:
        self._replay()
        self._flusher = threading.Thread(target=self._flush_loop, name="agentmeter-flusher", daemon=True)
        self._flusher.start()

    def close(self) -> None:
        """Write every held trace (marked shutdown_flush) and every buffered row, then retire the WAL."""
        self._stop.set()
        if self._flusher is not None:
            self._flusher.join(timeout=60)
        with self._lock:
            ready = self.buffer.drain()
        self._stitch(ready)
        self._write_rows(force=True)
        self.wal.close()
        self._retire_segments()

    # -- accepting ---------------------------------------------------------------------------------
    def accept(self, payload: bytes, decoded: DecodedBatch, received_time_ns: int) -> None:
        """Make the decoded spans durable (WAL) and hold them; returns only once they are safe to ack."""
        if decoded.table is None:
            return
        spans = span_refs(decoded.table)
        self._check_capacity()
        # While this append is in flight its segment has no outstanding count yet: keep retirement away from
        # every segment it could land in (the current one at start, or a later one after a rotation).
        with self._lock:
            start_seq = self.wal.current_seq
            self._appending[start_seq] += 1
        try:
            seq = self.wal.append(_RECEIVED.pack(received_time_ns) + payload)
            self._hold(spans, seq)
        except WalError as err:
            raise Overloaded(self.config.retry_after_seconds, f"cannot write the write-ahead log: {err}") from err
        finally:
            with self._lock:
                self._appending[start_seq] -= 1
                if not self._appending[start_seq]:
                    del self._appending[start_seq]
        self.live.spans_seen(spans)

    def _hold(self, spans: list[dict], seq: int) -> None:
        spans[0]["_batch"].wal_seq = seq  # the refs of one request share their batch
        with self._lock:
            self._outstanding[seq] += len(spans)
            replaced = self.buffer.add(spans, self.clock())
            # a span sent again (a client's retry) replaces the held one, which will never be written
            self._outstanding.subtract(_segments_of(replaced))
            self.stats.spans_accepted += len(spans)

    def _check_capacity(self) -> None:
        limit = self.config.max_pending_mib * MIB
        if self.wal.bytes_on_disk > limit:
            raise Overloaded(
                self.config.retry_after_seconds,
                f"receiver is behind: {self.wal.bytes_on_disk // MIB} MiB not yet written to Parquet",
            )
        now = self.clock()
        if now - self._disk_checked_at > 1.0:  # statvfs at most once a second
            self._disk_checked_at = now
            free = shutil.disk_usage(self.wal.directory).free
            self._disk_ok = free >= self.config.min_free_disk_mib * MIB
        if not self._disk_ok:
            raise Overloaded(
                self.config.retry_after_seconds, "disk almost full: not accepting data", ErrorKind.DISK_FULL
            )

    # -- flushing ----------------------------------------------------------------------------------
    def _flush_loop(self) -> None:
        tick = max(0.02, min(0.5, self.config.trace_grace_seconds / 4))
        while not self._stop.wait(tick):
            try:
                self.flush_due()
            except Exception:  # keep the flusher alive; rows stay held and the WAL keeps them safe
                log.exception("flush failed; will retry")

    def flush_due(self) -> None:
        with self._lock:
            ready = self.buffer.take_ready(self.clock())
        self._stitch(ready)
        self._write_rows(force=False)

    def _stitch(self, ready: list[ReadyTrace]) -> None:
        if not ready:
            return
        kept_rows: list[dict] = []
        dropped: Counter[int] = Counter()
        for trace in ready:
            kept = self.stitcher.finish_trace(trace.spans, trace.state)
            self.live.trace_finished(trace.trace_id)
            if len(kept) != len(trace.spans):
                kept_ids = {id(row) for row in kept}
                dropped.update(_segments_of(row for row in trace.spans if id(row) not in kept_ids))
            kept_rows.extend(kept)
            self.stats.traces_written += 1
            self.stats.traces_early += trace.state is not None
        with self._lock:
            if not self._rows:
                self._rows_since = self.clock()
            self._rows.extend(kept_rows)
            self._outstanding.subtract(dropped)
            self.stats.spans_dropped += sum(dropped.values())
        if dropped:
            self._retire_segments()

    def _write_rows(self, force: bool) -> None:
        with self._write_lock:
            with self._lock:
                due = len(self._rows) >= self.config.parquet_max_rows or (
                    self._rows and self.clock() - self._rows_since >= self.config.parquet_max_seconds
                )
                if not (due or (force and self._rows)):
                    return
                rows, self._rows = self._rows, []
            assembled = assemble(rows)
            try:
                written = self.files.write("spans", assembled.table)
            except OSError:
                with self._lock:  # put them back; the WAL still holds them
                    self._rows[:0] = rows
                raise
            done: Counter[int] = Counter()
            for batch, count in assembled.batches:
                done[batch.wal_seq] += count
            with self._lock:
                self._outstanding.subtract(done)
                self.stats.spans_written += len(rows)
                self.stats.parquet_files += len(written)
            log.debug("parquet written", files=[str(p) for p in written], rows=len(rows))
        # close the current segment so that its records can be retired once written
        self.wal.rotate()
        self._retire_segments()

    def _retire_segments(self) -> None:
        current = self.wal.current_seq
        with self._lock:
            floor = min(self._appending, default=current)
            done = [seq for seq in self.wal.segments() if seq < min(current, floor) and self._outstanding[seq] <= 0]
            for seq in done:
                self._outstanding.pop(seq, None)
        for seq in done:
            self.wal.retire(seq)

    # -- replay ------------------------------------------------------------------------------------
    def _replay(self) -> None:
        segments = self.wal.segments()
        if not segments:
            return
        already_written = self._written_span_ids(segments)
        replayed = skipped = 0
        for seq, record in self.wal.replay():
            (received_ns,) = _RECEIVED.unpack_from(record)
            decoded = decode_request(record[_RECEIVED.size :], received_ns, DecodeLimits.from_config(self.config))
            spans = span_refs(decoded.table) if decoded.table is not None else []
            fresh = [row for row in spans if (row["trace_id"], row["span_id"]) not in already_written]
            skipped += len(spans) - len(fresh)
            if fresh:
                self._hold(fresh, seq)
                self.live.spans_seen(fresh)
            replayed += len(fresh)
        self.stats.spans_replayed = replayed
        self.stats.spans_replay_skipped = skipped
        self.stats.spans_accepted = 0
        # the replayed segments are closed; new appends go to a new segment
        self.wal.rotate()
        self._retire_segments()
        log.info("write-ahead log replayed", spans=replayed, already_in_parquet=skipped, segments=len(segments))

    def _written_span_ids(self, segments: list[int]) -> set[tuple[bytes, bytes]]:
        first_seq = None
        for seq in segments:
            try:
                header = self.wal.header(seq)
            except (OSError, ValueError):
                continue
            if len(header) == _SEGMENT_HEADER.size:
                value = _SEGMENT_HEADER.unpack(header)[0]
                first_seq = value if first_seq is None else min(first_seq, value)
        if first_seq is None:
            return set()
        ids: set[tuple[bytes, bytes]] = set()
        for path in self.files.files_of_writer("spans", min_seq=first_seq):
            table = pq.read_table(path, columns=["trace_id", "span_id"])
            ids.update(zip(table.column("trace_id").to_pylist(), table.column("span_id").to_pylist(), strict=True))
        return ids

    # -- introspection (telemetry reads these at scrape time) ----------------------------------------
    def snapshot(self) -> dict:
        with self._lock:
            return {
                **self.stats.__dict__,
                "traces_held": self.buffer.trace_count,
                "spans_held": self.buffer.span_count,
                "rows_buffered": len(self._rows),
                "wal_bytes": self.wal.bytes_on_disk,
                "wal_segments": len(self.wal.segments()),
            }
