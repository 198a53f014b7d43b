"""From an accepted request to durable Parquet, losing nothing and writing nothing twice.

    accept():        WAL append (+ fsync per policy) -> trace buffer -> acknowledged
    flusher (tick):  due traces -> stitching -> the writer's staged rows -> Parquet (atomic) -> WAL retired

The WAL, the Parquet files and retirement are the shared durable batch writer's
(storage/batch_writer.py; GPU metrics use the same one): this module holds traces until they are whole,
stitches them and hands their spans to it. The rows held are span refs (span_refs.py): the few fields
stitching reads, pointing into the Arrow table their request was decoded to; the written table is
assembled from those tables.

What keeps it exact:
- every held span remembers its WAL segment (its batch's `wal_seq`); the writer counts per segment the rows
  not yet in a finished Parquet file; spans the keep rule drops, a span sent again while held (the buffer
  keeps one) and spans written recently (a batch sent again after a lost answer: RecentSpans) are released;
  a closed segment at zero is deleted;
- a trace whose root never arrives must not keep its WAL segments, and so the whole receiver, in
  back-pressure for up to `--trace-max-wait-seconds`: when the WAL nears `--max-pending-mib`, the traces
  holding spans of its oldest segments are written early (`early_flush`), so those segments retire;
- on restart the WAL is replayed; spans already in this writer's Parquet files (a crash between a file's
  rename and the segment's deletion) are skipped (batch_writer.written_keys);
- a start whose dataset cannot be reached yet (an object store down: `defer_start`) accepts requests into
  the WAL only, within the writer's limits (back-pressure past --max-pending-mib), and holds nothing; the
  `start()` that succeeds later replays them with everything else, so they are held, stitched and written
  exactly as after a restart (the WAL segments opened meanwhile record seq 0: every file is checked).
"""

from __future__ import annotations

import struct
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import structlog

from collector_ext.config import MIB, ReceiverConfig
from collector_ext.decode.batch import DecodedBatch, decode_request
from collector_ext.decode.limits import DecodeLimits
from collector_ext.errors import ErrorKind, ReceiverError
from collector_ext.schema import STITCH_EARLY
from collector_ext.storage.batch_writer import DurableBatchWriter, Part, WriterLimits, WriterSnapshot
from collector_ext.storage.dataset_files import DatasetFiles
from collector_ext.storage.stores import is_object_store
from collector_ext.storage.wal import WriteAheadLog
from collector_ext.traces.cost_meter import CostMeter
from collector_ext.traces.live_state import LiveState
from collector_ext.traces.recent_spans import RecentSpans
from collector_ext.traces.runaway import RunawayWatch
from collector_ext.traces.span_refs import SpanRef, assemble, span_refs
from collector_ext.traces.stitching import Stitcher
from collector_ext.traces.trace_buffer import ReadyTrace, TraceBuffer

log = structlog.get_logger("agentmeter.pipeline")

PIPELINE = "spans"
_RECEIVED = struct.Struct("<q")  # each WAL record: received time (ns) | serialized ExportTraceServiceRequest
# WAL pressure: past this share of --max-pending-mib, the traces holding spans of the oldest segments are
# written early, until what stays pinned is below the lower share.
PRESSURE_AT = 0.75
RELIEVED_AT = 0.5


def _segments_of(spans: Iterable[SpanRef]) -> Counter[int]:
    """How many of `spans` came from each WAL segment."""
    return Counter(span.batch.wal_seq for span in spans if span.batch is not None and span.batch.wal_seq is not None)


def _to_part(spans: list[SpanRef]) -> Part:
    assembled = assemble(spans)
    return Part(assembled.table, assembled.segments())


@dataclass
class PipelineStats:
    spans_accepted: int = 0
    spans_dropped: int = 0  # not kept by the keep rule (e.g. traces with no GenAI span)
    spans_replayed: int = 0
    spans_replay_skipped: int = 0  # already in Parquet before the crash
    spans_duplicate_skipped: int = 0  # written recently: a batch sent again after a lost answer
    traces_written: int = 0
    traces_early: int = 0  # written before they were complete (memory limit, WAL pressure, max wait, shutdown)
    traces_wal_pressure: int = 0  # of those, written early because they held the oldest WAL segments
    stitch_failures: int = 0  # traces written unstitched because stitching raised (a bug; logged)


@dataclass
class PipelineSnapshot:
    stats: PipelineStats
    traces_held: int
    spans_held: int
    writer: WriterSnapshot
    quarantined_files: int  # damaged Parquet files of this writer moved aside (any table)


class Pipeline:
    def __init__(
        self,
        config: ReceiverConfig,
        stitcher: Stitcher,
        live: LiveState,
        clock: Callable[[], float] = time.monotonic,
        *,
        meter: CostMeter | None = None,
        runaway: RunawayWatch | None = None,
    ) -> None:
        self.config = config
        self.stitcher = stitcher
        self.live = live
        self.meter = meter  # live cost metrics: the calls of the spans handed to the writer
        self.runaway = runaway  # runaway tasks: fed at accept, a task ends when its top trace is handed on
        self.clock = clock
        self.stats = PipelineStats()
        # an object store is first reached by start() (it may be down now: defer_start); a directory at once
        self.files = DatasetFiles(config.data_dir, config.writer_id, connect=not is_object_store(config.data_dir))
        self.wal = WriteAheadLog(
            config.wal_path,
            segment_bytes=config.wal_segment_mib * MIB,
            fsync=config.fsync,
            segment_header=lambda: self.writer.segment_header(),
        )
        self.writer: DurableBatchWriter[SpanRef] = DurableBatchWriter(
            pipeline=PIPELINE,
            table="spans",
            wal=self.wal,
            files=self.files,
            to_part=_to_part,
            limits=writer_limits(config),
            max_rows=config.parquet_max_rows,
            max_seconds=config.parquet_max_seconds,
            tick_seconds=max(0.02, min(0.5, config.trace_grace_seconds / 4)),
            on_tick=self.hand_on_due_traces,
            clock=clock,
        )
        self.buffer = TraceBuffer(config.trace_grace_seconds, config.trace_max_wait_seconds, config.max_held_spans)
        self.recent = RecentSpans(config.dedupe_window_spans)
        self._lock = threading.Lock()  # guards the trace buffer, the recent spans and the stats
        self._deferred = False  # accept() only appends to the WAL until start() succeeds
        self._starting = threading.Lock()  # start() against the accepts of a deferred start

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> None:
        """Connect to the dataset, replay the WAL (skipping spans already in our Parquet), start the flusher.
        Raises OSError while the dataset cannot be reached (nothing is then held: start() can be called
        again)."""
        with self._starting:
            if self._deferred:
                self.wal.rotate()  # what was accepted meanwhile is replayed with the rest
            if not self.files.connected:
                self.files.connect()
            self._replay()
            self.writer.start()
            self._deferred = False

    def defer_start(self) -> None:
        """Accept into the WAL only, until start() succeeds (the dataset cannot be reached yet)."""
        self._deferred = True

    @property
    def started(self) -> bool:
        return not self._deferred

    def close(self) -> bool:
        """Write every held trace (marked shutdown_flush) and every staged row, then retire the WAL. Returns
        False when rows could not be written (they stay in the WAL for the next start)."""
        if self._deferred:  # never started: everything accepted is in the WAL, for the next start
            self.wal.close()
            return False
        self.writer.stop_flusher()
        with self._lock:
            ready = self.buffer.drain()
        self._stitch(ready)
        return self.writer.close()

    # -- accepting ---------------------------------------------------------------------------------
    def accept(self, payload: bytes, decoded: DecodedBatch, received_time_ns: int) -> None:
        """Make the decoded spans durable (WAL) and hold them; returns only once they are safe to ack.
        Raises the retryable ReceiverError (back-pressure, a full disk, a WAL that cannot be written)."""
        if decoded.table is None:
            return
        if self._deferred and self._accept_into_wal_only(payload, received_time_ns):
            return
        spans = span_refs(decoded.table)
        seq = self.writer.append(_RECEIVED.pack(received_time_ns), payload, rows=len(spans))
        self._hold(spans, seq)
        self._seen(spans)

    def _accept_into_wal_only(self, payload: bytes, received_time_ns: int) -> bool:
        """A deferred start: the request into the WAL (with its back-pressure), nothing held; start() replays it.
        False when the pipeline has started meanwhile (accept as usual); while start() replays, the retryable
        OVERLOADED (the replay takes seconds at most; a request appended now would miss it)."""
        if not self._starting.acquire(blocking=False):
            raise ReceiverError(
                ErrorKind.OVERLOADED,
                "receiver is starting: replaying its write-ahead log",
                self.writer.limits.retry_after_s,
            )
        try:
            if not self._deferred:
                return False
            self.writer.append(_RECEIVED.pack(received_time_ns), payload, rows=0)  # counted when replayed
            return True
        finally:
            self._starting.release()

    def _seen(self, spans: list[SpanRef]) -> None:
        self.live.spans_seen(spans)
        if self.runaway is not None:
            self.runaway.spans_seen(spans)

    def _hold(self, spans: list[SpanRef], seq: int) -> None:
        batch = spans[0].batch  # the refs of one request share their batch
        assert batch is not None
        batch.wal_seq = seq
        with self._lock:
            replaced = self.buffer.add(spans, self.clock(), seq)
            self.stats.spans_accepted += len(spans)
        # a span sent again (a client's retry) replaces the held one, which will never be written
        self.writer.release(_segments_of(replaced))

    # -- handing traces on -------------------------------------------------------------------------
    def flush_due(self) -> None:
        """One flusher tick, run by hand (tests): hand on due traces, write what is due."""
        self.hand_on_due_traces()
        self.writer.write_due()

    def hand_on_due_traces(self) -> None:
        with self._lock:
            ready = self.buffer.take_ready(self.clock())
        self._stitch(ready)
        self._relieve_wal_pressure()

    def _relieve_wal_pressure(self) -> None:
        limit = self.writer.limits.max_pending_bytes
        if self.wal.bytes_on_disk < PRESSURE_AT * limit:
            return
        self.writer.write_due(force=True)  # rows already staged first: writing them may be enough
        sizes = self.wal.segment_sizes()
        total = sum(size for _, size in sizes)
        if total < PRESSURE_AT * limit:
            return
        excess = total - RELIEVED_AT * limit
        through = sizes[0][0]
        for seq, size in sizes:
            through = seq
            excess -= size
            if excess <= 0:
                break
        with self._lock:
            ready = self.buffer.take_pinning(through)
            self.stats.traces_wal_pressure += len(ready)
        if ready:
            log.warning(
                "write-ahead log near its limit: writing the traces that hold its oldest segments early",
                traces=len(ready),
                through_segment=through,
            )
            self._stitch(ready)

    def _stitch(self, ready: list[ReadyTrace]) -> None:
        if not ready:
            return
        staged: list[SpanRef] = []
        released: Counter[int] = Counter()
        dropped = duplicates = early = failures = 0
        for trace in ready:
            try:
                kept = self.stitcher.finish_trace(trace.spans, trace.state)
            except Exception:  # a bug in stitching must not lose acknowledged spans: write them unstitched
                log.exception(
                    "stitching a trace failed; its spans are written unstitched", trace_id=trace.trace_id.hex()
                )
                for span in trace.spans:
                    span.stitch_state = trace.state or STITCH_EARLY
                kept = trace.spans
                failures += 1
            self.live.trace_finished(trace.trace_id)
            if self.runaway is not None:
                self.runaway.trace_finished(trace.trace_id)
            if len(kept) != len(trace.spans):
                kept_ids = {id(span) for span in kept}
                gone = [span for span in trace.spans if id(span) not in kept_ids]
                released.update(_segments_of(gone))
                dropped += len(gone)
            staged.extend(kept)
            early += trace.state is not None
        with self._lock:
            fresh = self.recent.fresh(staged)
            self.stats.traces_written += len(ready)
            self.stats.traces_early += early
            self.stats.spans_dropped += dropped
            self.stats.stitch_failures += failures
        if len(fresh) != len(staged):
            fresh_ids = {id(span) for span in fresh}
            again = [span for span in staged if id(span) not in fresh_ids]
            released.update(_segments_of(again))
            duplicates = len(again)
            with self._lock:
                self.stats.spans_duplicate_skipped += duplicates
        if self.meter is not None:
            self.meter.count(fresh)
        self.writer.stage(fresh)
        self.writer.release(released)
        if released:
            self.writer.retire()

    # -- replay ------------------------------------------------------------------------------------
    def _replay(self) -> None:
        held: list[tuple[int, list[SpanRef]]] = []
        dates: set[str] = set()
        limits = DecodeLimits.from_config(self.config)
        for seq, record in self.writer.records():
            (received_ns,) = _RECEIVED.unpack_from(record)
            decoded = decode_request(record[_RECEIVED.size :], received_ns, limits)
            if decoded.table is None:
                continue
            held.append((seq, span_refs(decoded.table)))
            dates.update(_dates(decoded.table))
        if not held:
            self.writer.finish_replay()
            return
        written = self.writer.written_keys(["trace_id", "span_id"], dates)
        replayed = skipped = 0
        for seq, spans in held:
            fresh = [span for span in spans if (span.trace_id, span.span_id) not in written]
            skipped += len(spans) - len(fresh)
            if fresh:
                self.writer.hold_replayed(seq, len(fresh))
                self._hold(fresh, seq)
                self._seen(fresh)
            replayed += len(fresh)
        self.stats.spans_replayed = replayed
        self.stats.spans_replay_skipped = skipped
        self.stats.spans_accepted = 0
        self.writer.finish_replay()
        log.info(
            "write-ahead log replayed",
            spans=replayed,
            already_in_parquet=skipped,
            records=len(held),
            corrupt_records=self.wal.corrupt_records,
        )

    # -- introspection (telemetry reads these at scrape time) ----------------------------------------
    def snapshot(self) -> PipelineSnapshot:
        with self._lock:
            stats = PipelineStats(**self.stats.__dict__)
            traces, spans = self.buffer.trace_count, self.buffer.span_count
        return PipelineSnapshot(stats, traces, spans, self.writer.snapshot(), self.files.quarantined)


def writer_limits(config: ReceiverConfig) -> WriterLimits:
    return WriterLimits(
        max_pending_bytes=config.max_pending_mib * MIB,
        min_free_disk_bytes=config.min_free_disk_mib * MIB,
        retry_after_s=config.retry_after_seconds,
    )


def _dates(table: pa.Table) -> list[str]:
    """The date partitions (UTC dates of start_time) the spans of `table` are written to."""
    return [day.isoformat() for day in pc.unique(table.column("start_time").cast(pa.date32())).to_pylist()]
