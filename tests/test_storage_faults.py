"""Faults of the durable path, in process (issue 16's storage rows): whatever fails, acknowledged spans and GPU
samples are written exactly once, transient trouble is a retryable answer, damage is skipped and said.

Each test counts what was acknowledged (accept/export returned) and reads back what is in Parquet, by
(trace_id, span_id) or by sample, and holds the two equal, with no row twice.
"""

from __future__ import annotations

import errno
import os
import shutil
import time
from datetime import UTC, datetime

import duckdb
import pyarrow as pa
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span
from test_crash_recovery import agent_request
from test_gpu_metrics import gauge_request
from test_pipeline import accept, make_pipeline

import collector_ext.traces.pipeline as pipeline_module
from collector_ext.config import ReceiverConfig
from collector_ext.errors import ErrorKind, ReceiverError
from collector_ext.gpu.metrics import GpuMetricsReceiver
from collector_ext.receiver.status import STATUS
from collector_ext.schema import STITCH_EARLY
from collector_ext.storage.dataset_files import QUARANTINE_DIR, DatasetFiles
from collector_ext.storage.wal import WalError
from collector_ext.traces.pipeline import Pipeline


class Clock:
    """A manual monotonic clock: the tests run the flusher's steps themselves, nothing depends on timing."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def written(data_dir) -> list[tuple[str, str]]:
    """(trace_id, span_id) of every span row in the dataset, duplicates kept."""
    if not list(data_dir.glob("spans/date=*/*.parquet")):
        return []
    return (
        duckdb.connect()
        .sql(f"SELECT lower(hex(trace_id)), lower(hex(span_id)) FROM read_parquet('{data_dir}/spans/*/*.parquet')")
        .fetchall()
    )


def assert_exactly_once(data_dir, acked: set[tuple[str, str]]) -> None:
    rows = written(data_dir)
    assert len(rows) == len(set(rows)), "a span was written twice"
    assert set(rows) == acked, f"{len(acked - set(rows))} acknowledged spans lost, {len(set(rows) - acked)} extra"


def write_out(pipeline: Pipeline) -> None:
    """One flusher tick that writes whatever it staged now: hand on due traces, write a file."""
    pipeline.hand_on_due_traces()
    pipeline.writer.write_due(force=True)


def crash(pipeline: Pipeline) -> None:
    """kill -9, as far as one process can: the flusher stops, nothing is written out, nothing closed."""
    pipeline.writer.stop_flusher()


# -- a failed Parquet write of any kind keeps its rows ---------------------------------------------------------
@pytest.mark.parametrize(
    "failure",
    [
        pa.ArrowInvalid("Parquet writer: invalid state"),
        OSError(errno.EMFILE, "Too many open files"),
        OSError(errno.ENOSPC, "No space left on device"),
        MemoryError(),
    ],
    ids=["arrow-error", "EMFILE", "ENOSPC", "MemoryError"],
)
def test_a_failed_flush_of_any_kind_keeps_the_rows_and_the_retry_writes_them_once(data_dir, monkeypatch, failure):
    pipeline = make_pipeline(data_dir)
    acked: set[tuple[str, str]] = set()
    for request_no in range(3):
        payload, ids = agent_request(request_no)
        accept(pipeline, payload)
        acked |= ids
    real_write = DatasetFiles.write_file
    failures = iter([failure])

    def failing_once(self, *args):
        error = next(failures, None)
        if error is not None:
            raise error
        return real_write(self, *args)

    monkeypatch.setattr(DatasetFiles, "write_file", failing_once)
    with pytest.raises(type(failure)):
        write_out(pipeline)
    snapshot = pipeline.snapshot().writer
    assert (snapshot.rows_buffered, snapshot.parquet_write_failures, written(data_dir)) == (len(acked), 1, [])
    assert snapshot.wal_segments == 1  # the WAL still holds them
    write_out(pipeline)
    assert_exactly_once(data_dir, acked)
    assert pipeline.snapshot().writer.wal_segments == 0
    pipeline.close()
    assert_exactly_once(data_dir, acked)


def test_a_bug_while_building_the_table_keeps_the_rows_too(data_dir, monkeypatch):
    pipeline = make_pipeline(data_dir)
    payload, acked = agent_request(0)
    accept(pipeline, payload)
    real = pipeline.writer._to_part
    calls = iter([RuntimeError("bug")])

    def to_part(items):
        error = next(calls, None)
        if error is not None:
            raise error
        return real(items)

    monkeypatch.setattr(pipeline.writer, "_to_part", to_part)
    with pytest.raises(RuntimeError):
        write_out(pipeline)
    assert pipeline.snapshot().writer.rows_buffered == len(acked)
    pipeline.close()
    assert_exactly_once(data_dir, acked)


# -- a flush spanning two dates ------------------------------------------------------------------------------
def _request_on(day: datetime, request_no: int) -> tuple[bytes, set[tuple[str, str]]]:
    payload, ids = agent_request(request_no)
    request = ExportTraceServiceRequest.FromString(payload)
    start = int(day.timestamp() * 1e9)
    for span in request.resource_spans[0].scope_spans[0].spans:
        span.start_time_unix_nano, span.end_time_unix_nano = start, start + 1000
    return request.SerializeToString(), ids


def test_a_flush_spanning_two_dates_never_rewrites_the_date_that_was_written(data_dir, monkeypatch):
    pipeline = make_pipeline(data_dir)
    acked: set[tuple[str, str]] = set()
    for request_no, day in enumerate([datetime(2026, 11, 1, 12, tzinfo=UTC), datetime(2026, 11, 2, 12, tzinfo=UTC)]):
        payload, ids = _request_on(day, request_no)
        accept(pipeline, payload)
        acked |= ids
    real_write = DatasetFiles.write_file
    attempts: list[str] = []

    def second_date_fails_once(self, table_name, date, table, *rest):
        attempts.append(date)
        if date == "2026-11-02" and attempts.count(date) == 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(self, table_name, date, table, *rest)

    monkeypatch.setattr(DatasetFiles, "write_file", second_date_fails_once)
    with pytest.raises(OSError):
        write_out(pipeline)
    assert [p.parent.name for p in data_dir.glob("spans/date=*/*.parquet")] == ["date=2026-11-01"]
    write_out(pipeline)
    assert attempts == ["2026-11-01", "2026-11-02", "2026-11-02"]  # the first date is not written again
    assert sorted(p.parent.name for p in data_dir.glob("spans/date=*/*.parquet")) == [
        "date=2026-11-01",
        "date=2026-11-02",
    ]
    pipeline.close()
    assert_exactly_once(data_dir, acked)


# -- the WAL cannot be written: a retryable answer, never INTERNAL -------------------------------------------------
@pytest.mark.parametrize(
    ("code", "kind"),
    [
        (errno.EMFILE, ErrorKind.STORAGE_UNAVAILABLE),
        (errno.ENFILE, ErrorKind.STORAGE_UNAVAILABLE),
        (errno.ENOSPC, ErrorKind.DISK_FULL),
    ],
)
@pytest.mark.parametrize("where", ["open", "writev"])
def test_a_wal_that_cannot_be_written_answers_retryable_back_pressure(data_dir, monkeypatch, code, kind, where):
    pipeline = make_pipeline(data_dir, trace_grace_seconds=3600)
    payload, first = agent_request(0)
    if where == "writev":
        accept(pipeline, payload)  # the segment is open: the next failure is in the write itself
    else:
        accept(pipeline, payload)
        pipeline.wal.rotate()  # the next append opens a segment: the failure is in the open
    real = getattr(os, where)

    def failing(*args, **kwargs):
        if where == "open" and not str(args[0]).endswith(".wal"):
            return real(*args, **kwargs)
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, where, failing)
    refused, _ = agent_request(1)
    with pytest.raises(ReceiverError) as raised:
        accept(pipeline, refused)
    monkeypatch.undo()
    error = raised.value
    # retryable, after the configured --retry-after-seconds (None: the transport's), never INTERNAL
    assert (error.kind, STATUS[error.kind].retryable, error.retry_after_s) == (kind, True, None)
    if kind is ErrorKind.DISK_FULL:
        assert error.message == "receiver's disk is full"
    else:
        assert error.message == f"receiver cannot write its data now: write-ahead log: {os.strerror(code)}"
    assert pipeline.snapshot().writer.wal_append_failures == 1
    payload, second = agent_request(2)  # the fault is gone: accepted again
    accept(pipeline, payload)
    crash(pipeline)
    restarted = make_pipeline(data_dir)
    restarted.start()
    restarted.close()
    assert_exactly_once(data_dir, first | second)


def test_the_gpu_metrics_pipeline_has_the_same_back_pressure(data_dir, monkeypatch):
    config = ReceiverConfig(
        data_dir=data_dir, writer_id="w1", fsync="never", max_pending_mib=1, min_free_disk_mib=0, wal_segment_mib=1
    )
    receiver = GpuMetricsReceiver(config, DatasetFiles(data_dir, "w1"))
    receiver.writer.stop_flusher()
    acked = []

    def unwritable(*args):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(DatasetFiles, "write_file", unwritable)  # Parquet cannot be written: the WAL fills up
    sample = 0
    with pytest.raises(ReceiverError) as raised:
        for sample in range(100_000):  # bounded: ~100 bytes a sample, the limit is 1 MiB
            request = gauge_request([(10**18 + sample, 0.5, {"gpu": "0", "pod": "p" * 200})])
            receiver.export(request)
            acked.append(10**18 + sample)
            if sample % 500 == 0:
                with pytest.raises(OSError):
                    receiver.writer.write_due(force=True)
    assert (raised.value.kind, STATUS[raised.value.kind].retryable) == (ErrorKind.OVERLOADED, True)
    assert "gpu_metrics not yet written to Parquet" in raised.value.message
    monkeypatch.undo()
    snapshot = receiver.snapshot().writer
    assert snapshot.refusals_pending == 1 and snapshot.parquet_write_failures >= 1
    assert receiver.writer.write_due(force=True) == len(acked)  # Parquet is back: the WAL drains
    assert receiver.snapshot().writer.wal_bytes == 0
    # a WAL write failing is retryable too
    monkeypatch.setattr(receiver.wal, "append", lambda *parts: (_ for _ in ()).throw(WalError(errno.ENOSPC, "full")))
    with pytest.raises(ReceiverError) as raised:
        receiver.export(gauge_request([(10**18 - 1, 0.5, {"gpu": "0"})]))
    assert raised.value.kind is ErrorKind.DISK_FULL
    monkeypatch.undo()
    assert receiver.close()
    times = (
        duckdb.connect()
        .sql(f"SELECT epoch_ns(time) FROM read_parquet('{data_dir}/gpu_metrics/*/*.parquet')")
        .fetchall()
    )
    assert sorted(t for (t,) in times) == acked


# -- disk full in the WAL, then a crash -----------------------------------------------------------------------
class FullDisk:
    """os.writev while the disk fills up: the `nth` write is cut short, then every write fails with ENOSPC until
    `free()`; optionally ftruncate fails too (the partial record cannot be cut back)."""

    def __init__(self, nth: int, truncate_fails: bool) -> None:
        self.nth, self.calls, self.full, self.truncate_fails = nth, 0, False, truncate_fails
        self.real_writev, self.real_ftruncate = os.writev, os.ftruncate

    def writev(self, fd, buffers):
        self.calls += 1
        if self.calls == self.nth:
            self.full = True
            data = b"".join(bytes(b) for b in buffers)
            return os.write(fd, data[: len(data) // 2])
        if self.full:
            raise OSError(errno.ENOSPC, "No space left on device")
        return self.real_writev(fd, buffers)

    def ftruncate(self, fd, length):
        if self.full and self.truncate_fails:
            raise OSError(errno.ENOSPC, "No space left on device")
        return self.real_ftruncate(fd, length)

    def free(self) -> None:
        self.full = False


@pytest.mark.parametrize("truncate_fails", [False, True], ids=["cut-back", "cut-back-fails"])
def test_disk_full_in_the_wal_then_kill_loses_no_acknowledged_span(data_dir, monkeypatch, truncate_fails):
    pipeline = make_pipeline(data_dir, trace_grace_seconds=3600)  # everything stays in the WAL
    disk = FullDisk(nth=6, truncate_fails=truncate_fails)
    monkeypatch.setattr(os, "writev", disk.writev)
    monkeypatch.setattr(os, "ftruncate", disk.ftruncate)
    acked: set[tuple[str, str]] = set()
    refused = 0
    for request_no in range(14):
        if request_no == 10:
            disk.free()  # space was freed (the operator, or retention)
        payload, ids = agent_request(request_no)
        try:
            accept(pipeline, payload)
        except ReceiverError as err:
            assert (err.kind, STATUS[err.kind].retryable) == (ErrorKind.DISK_FULL, True)
            refused += 1
            continue
        acked |= ids
    monkeypatch.undo()
    assert refused == 6  # requests 4..9: the 6th write (the 1st was the segment's header) was cut short
    crash(pipeline)
    restarted = make_pipeline(data_dir)
    restarted.start()
    assert restarted.stats.spans_replayed == len(acked)
    assert restarted.wal.corrupt_records == 0  # a torn tail is not damage
    restarted.close()
    assert_exactly_once(data_dir, acked)


# -- damage in the WAL ---------------------------------------------------------------------------------------
def test_a_damaged_wal_record_5_of_20_costs_that_request_only_and_is_counted(data_dir):
    pipeline = make_pipeline(data_dir, trace_grace_seconds=3600)
    acked: dict[int, set[tuple[str, str]]] = {}
    offsets = []
    for request_no in range(20):
        offsets.append(pipeline.wal._written)
        payload, ids = agent_request(request_no)
        accept(pipeline, payload)
        acked[request_no] = ids
    crash(pipeline)
    pipeline.wal.close()
    segment = next(pipeline.config.wal_path.glob("*.wal"))
    data = bytearray(segment.read_bytes())
    data[offsets[4] + 4] ^= 0x04  # a bad length in record 5
    segment.write_bytes(bytes(data))
    restarted = make_pipeline(data_dir)
    restarted.start()
    assert restarted.snapshot().writer.wal_corrupt_records == 1
    restarted.close()
    assert_exactly_once(data_dir, set().union(*(ids for n, ids in acked.items() if n != 4)))


def test_an_overwritten_segment_header_causes_no_duplicates(data_dir, tmp_path):
    """A crash between a Parquet file's rename and its segment's deletion, and the segment's header (where the
    replay's de-duplication starts) overwritten: every file of this writer is checked instead."""
    pipeline = make_pipeline(data_dir)
    old, old_ids = agent_request(0)
    accept(pipeline, old)
    write_out(pipeline)  # a first file (seq 1), its segment retired
    payload, ids = agent_request(1)
    accept(pipeline, payload)
    wal_copy = tmp_path / "wal-copy"
    shutil.copytree(pipeline.config.wal_path, wal_copy)
    write_out(pipeline)  # the second file (seq 2)
    crash(pipeline)
    shutil.rmtree(pipeline.config.wal_path)
    shutil.copytree(wal_copy, pipeline.config.wal_path)  # the segment deletion never happened
    (segment,) = pipeline.config.wal_path.glob("*.wal")
    data = bytearray(segment.read_bytes())
    data[len(b"AMWAL2\n") + 8 : len(b"AMWAL2\n") + 16] = (99).to_bytes(8, "little")  # "files from seq 99 on"
    segment.write_bytes(bytes(data))
    restarted = make_pipeline(data_dir)
    restarted.start()
    assert (restarted.stats.spans_replay_skipped, restarted.stats.spans_replayed) == (len(ids), 0)
    restarted.close()
    assert_exactly_once(data_dir, old_ids | ids)


# -- a damaged Parquet file of this writer ---------------------------------------------------------------------
def test_a_damaged_parquet_file_is_quarantined_and_its_rows_written_again_from_the_wal(data_dir, tmp_path):
    pipeline = make_pipeline(data_dir)
    payload, ids = agent_request(0)
    accept(pipeline, payload)
    wal_copy = tmp_path / "wal-copy"
    shutil.copytree(pipeline.config.wal_path, wal_copy)
    write_out(pipeline)
    crash(pipeline)
    shutil.rmtree(pipeline.config.wal_path)
    shutil.copytree(wal_copy, pipeline.config.wal_path)
    (damaged,) = data_dir.glob("spans/date=*/*.parquet")
    damaged.write_bytes(damaged.read_bytes()[:-100])  # truncated: no footer
    restarted = make_pipeline(data_dir)
    restarted.start()  # does not fail
    assert restarted.snapshot().quarantined_files == 1
    assert (data_dir / QUARANTINE_DIR / "spans" / damaged.parent.name / damaged.name).exists()
    restarted.close()
    assert_exactly_once(data_dir, ids)  # the analyzer reads spans/ only: the quarantined copy is not counted


# -- the same batch again after a lost answer ------------------------------------------------------------------
def test_a_batch_sent_again_after_its_trace_was_written_is_not_written_twice(data_dir):
    pipeline = make_pipeline(data_dir)
    payload, ids = agent_request(0)
    accept(pipeline, payload)
    write_out(pipeline)
    assert_exactly_once(data_dir, ids)
    accept(pipeline, payload)  # the client never got the answer: the same batch again
    write_out(pipeline)
    assert pipeline.stats.spans_duplicate_skipped == len(ids)
    assert pipeline.snapshot().writer.wal_segments == 0  # the copy's segment retired without it
    pipeline.close()
    assert_exactly_once(data_dir, ids)


def test_kill_between_the_wal_and_the_answer_then_the_retry_writes_once(data_dir):
    pipeline = make_pipeline(data_dir, trace_grace_seconds=3600)
    payload, ids = agent_request(0)
    accept(pipeline, payload)  # in the WAL; the answer is lost with the process
    crash(pipeline)
    restarted = make_pipeline(data_dir)
    restarted.start()  # replays the request and holds its traces
    restarted.writer.stop_flusher()  # the test runs the flusher's steps itself
    restarted.buffer.grace_seconds = 0
    write_out(restarted)
    assert_exactly_once(data_dir, ids)
    accept(restarted, payload)  # the client's retry arrives after the replayed copy was written
    write_out(restarted)
    restarted.close()
    assert restarted.stats.spans_duplicate_skipped == len(ids)
    assert_exactly_once(data_dir, ids)


# -- traces whose root never arrives must not pin the WAL ---------------------------------------------------
def rootless_request(request_no: int) -> tuple[bytes, set[tuple[str, str]]]:
    """1000 spans: 333 whole agent traces of 3 spans, and one span whose trace's root never arrives."""
    spans, ids = [], set()
    now = time.time_ns()

    def add(trace: int, span: int, parent: int | None, name: str, operation: str) -> None:
        trace_id, span_id = trace.to_bytes(16, "big"), span.to_bytes(8, "big")
        spans.append(
            Span(
                trace_id=trace_id,
                span_id=span_id,
                parent_span_id=parent.to_bytes(8, "big") if parent else b"",
                name=name,
                start_time_unix_nano=now,
                end_time_unix_nano=now + 1000,
                attributes=[KeyValue(key="gen_ai.operation.name", value=AnyValue(string_value=operation))],
            )
        )
        ids.add((trace_id.hex(), span_id.hex()))

    base = request_no * 1000
    for t in range(333):
        trace, root = base + t + 1, (base + t) * 3 + 1
        add(trace, root + 1, root, "chat", "chat")
        add(trace, root + 2, root, "chat", "chat")
        add(trace, root, None, "invoke_agent a", "invoke_agent")
    add(10**9 + request_no, 7, 6, "chat", "chat")  # its parent and root never come
    request = ExportTraceServiceRequest(resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=spans)])])
    return request.SerializeToString(), ids


def _rootless_stream(data_dir, requests: int) -> tuple[Pipeline, int, set[tuple[str, str]], int]:
    """Send `requests` rootless requests, running one flusher tick after each; returns the pipeline, the
    refusals, what was acknowledged and the most the WAL held."""
    clock = Clock()
    config = ReceiverConfig(
        data_dir=data_dir,
        writer_id="unit",
        trace_grace_seconds=0,
        trace_max_wait_seconds=900,
        parquet_max_rows=1,
        max_pending_mib=2,
        wal_segment_mib=1,
        min_free_disk_mib=0,
    )
    from collector_ext.traces.live_state import LiveState
    from collector_ext.traces.stitching import Stitcher

    pipeline = Pipeline(config, Stitcher(), LiveState(), clock=clock)
    refusals, acked, most = 0, set(), 0
    for request_no in range(requests):
        payload, ids = rootless_request(request_no)
        try:
            accept(pipeline, payload)
            acked |= ids
        except ReceiverError as err:
            assert err.kind is ErrorKind.OVERLOADED
            refusals += 1
        most = max(most, pipeline.wal.bytes_on_disk)
        clock.now += 1.0
        pipeline.flush_due()
    return pipeline, refusals, acked, most


def test_rootless_traces_no_longer_pin_the_wal_into_refusing_every_request(data_dir, tmp_path, monkeypatch):
    requests = 40  # ~85 kB each: 3.4 MB through a WAL limited to 2 MiB, every request pinning its segment
    # before: early writes counted only held spans; the WAL filled with segments each pinned by one span
    monkeypatch.setattr(pipeline_module, "PRESSURE_AT", float("inf"))
    pinned, refusals, acked, _ = _rootless_stream(tmp_path / "before", requests)
    assert refusals > requests // 3
    pinned.close()
    assert_exactly_once(tmp_path / "before", acked)
    monkeypatch.undo()
    # now: near the limit, the traces holding the oldest segments are written early and the segments retire
    pipeline, refusals, acked, most = _rootless_stream(data_dir, requests)
    assert refusals == 0
    assert most <= 2 * 1024 * 1024
    assert pipeline.stats.traces_wal_pressure > 0
    pipeline.close()
    assert_exactly_once(data_dir, acked)
    states: dict[bool, set[str]] = {}
    for trace_id, state in (
        duckdb.connect()
        .sql(f"SELECT trace_id, stitch_state FROM read_parquet('{data_dir}/spans/*/*.parquet')")
        .fetchall()
    ):
        states.setdefault(int.from_bytes(trace_id, "big") >= 10**9, set()).add(state)
    assert states[False] == {"ok"}
    assert STITCH_EARLY in states[True]  # the root-less spans went early, marked
