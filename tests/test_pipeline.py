"""The pipeline in-process: durable before ack, replay without duplicates, keep rule, back-pressure."""

from __future__ import annotations

import shutil
import time

import duckdb
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span
from test_crash_recovery import agent_request

from collector_ext.config import ReceiverConfig
from collector_ext.decode.batch import decode_request
from collector_ext.errors import ErrorKind, ReceiverError
from collector_ext.receiver.status import STATUS
from collector_ext.traces.live_state import LiveState
from collector_ext.traces.pipeline import Pipeline
from collector_ext.traces.stitching import Stitcher


def make_pipeline(data_dir, **overrides) -> Pipeline:
    settings = {
        "data_dir": data_dir,
        "writer_id": "unit",
        "trace_grace_seconds": 0,
        "parquet_max_seconds": 0.001,
        "min_free_disk_mib": 0,
        **overrides,
    }
    config = ReceiverConfig(**settings)
    return Pipeline(config, Stitcher(keep=config.keep), LiveState())


def accept(pipeline: Pipeline, payload: bytes) -> int:
    received = time.time_ns()
    decoded = decode_request(payload, received)
    pipeline.accept(payload, decoded, received)
    return decoded.accepted


def spans_in(data_dir) -> list[tuple[str, str]]:
    return (
        duckdb.connect()
        .sql(f"SELECT lower(hex(trace_id)), lower(hex(span_id)) FROM read_parquet('{data_dir}/spans/*/*.parquet')")
        .fetchall()
    )


def test_replay_after_crash_between_parquet_rename_and_wal_delete_writes_nothing_twice(data_dir, tmp_path):
    pipeline = make_pipeline(data_dir)
    payload, ids = agent_request(0)
    assert accept(pipeline, payload) == len(ids)
    wal_copy = tmp_path / "wal-copy"
    shutil.copytree(pipeline.config.wal_path, wal_copy)
    for _ in range(2):  # hand the trace on, then write the (aged) rows
        time.sleep(0.01)
        pipeline.flush_due()  # writes the Parquet file, then retires the segment
    assert pipeline.snapshot().writer.wal_segments == 0
    assert set(spans_in(data_dir)) == ids
    # the crash: the segment deletion never happened
    shutil.rmtree(pipeline.config.wal_path)
    shutil.copytree(wal_copy, pipeline.config.wal_path)

    restarted = make_pipeline(data_dir)
    restarted.start()
    assert restarted.stats.spans_replay_skipped == len(ids)
    assert restarted.stats.spans_replayed == 0
    restarted.close()
    rows = spans_in(data_dir)
    assert sorted(rows) == sorted(ids)
    assert list(pipeline.config.wal_path.glob("*.wal")) == []


def test_replay_of_unwritten_spans_writes_them_once(data_dir):
    pipeline = make_pipeline(data_dir, trace_grace_seconds=3600)
    payload, ids = agent_request(1)
    accept(pipeline, payload)
    # crash: nothing written out (no close)
    restarted = make_pipeline(data_dir)
    restarted.start()
    assert restarted.stats.spans_replayed == len(ids)
    restarted.close()
    assert sorted(spans_in(data_dir)) == sorted(ids)


def test_traces_without_genai_spans_are_dropped_and_their_wal_retired(data_dir):
    pipeline = make_pipeline(data_dir)
    now = time.time_ns()
    plain = Span(
        trace_id=b"\x01" * 16,
        span_id=b"\x02" * 8,
        name="GET /healthz",
        start_time_unix_nano=now,
        end_time_unix_nano=now,
    )
    payload = ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=[plain])])]
    ).SerializeToString()
    accept(pipeline, payload)
    pipeline.close()
    assert pipeline.stats.spans_dropped == 1
    assert pipeline.snapshot().writer.rows_written == 0
    assert not (data_dir / "spans").exists()
    assert list(pipeline.config.wal_path.glob("*.wal")) == []


def test_overloaded_when_unwritten_wal_passes_the_limit(data_dir):
    pipeline = make_pipeline(data_dir, max_pending_mib=1, trace_grace_seconds=3600, wal_segment_mib=1)
    accepted = 0
    with pytest.raises(ReceiverError) as raised:
        for request_no in range(10_000):  # bounded: ~1.3 kB per request, the limit is 1 MiB
            accepted += accept(pipeline, agent_request(request_no)[0])
    assert raised.value.kind is ErrorKind.OVERLOADED and STATUS[raised.value.kind].retryable
    assert "not yet written to Parquet" in raised.value.message
    assert raised.value.retry_after_s == pipeline.config.retry_after_seconds
    assert pipeline.snapshot().writer.refusals_pending == 1
    pipeline.close()  # what was accepted is still written out
    assert len(spans_in(data_dir)) == accepted


def test_a_request_sent_twice_is_written_once_and_both_wal_segments_retired(data_dir):
    # a client's retry after a lost answer: the same spans again, in another WAL segment
    pipeline = make_pipeline(data_dir, trace_grace_seconds=3600)
    payload, ids = agent_request(3)
    accept(pipeline, payload)
    pipeline.wal.rotate()
    accept(pipeline, payload)
    assert pipeline.snapshot().spans_held == len(ids)
    assert pipeline.snapshot().writer.wal_segments == 2
    pipeline.close()
    assert sorted(spans_in(data_dir)) == sorted(ids)
    assert pipeline.snapshot().writer.rows_written == len(ids)
    assert list(pipeline.config.wal_path.glob("*.wal")) == []


def test_a_request_sent_twice_does_not_pin_its_wal_segment_while_running(data_dir):
    pipeline = make_pipeline(data_dir)
    payload, ids = agent_request(4)
    accept(pipeline, payload)
    accept(pipeline, payload)
    for _ in range(3):  # hand the traces on, write the rows, retire what is written
        time.sleep(0.01)
        pipeline.flush_due()
    assert sorted(spans_in(data_dir)) == sorted(ids)
    assert pipeline.snapshot().writer.wal_segments == 0
    pipeline.close()
