"""Holding traces until root + quiet, max wait, memory limit or shutdown."""

from __future__ import annotations

from collector_ext.schema import STITCH_EARLY, STITCH_NO_ROOT, STITCH_SHUTDOWN
from collector_ext.traces.span_refs import SpanRef
from collector_ext.traces.trace_buffer import TraceBuffer


def span(trace: int, span_id: int, parent: int | None) -> SpanRef:
    return SpanRef(
        trace_id=trace.to_bytes(16, "big"),
        span_id=span_id.to_bytes(8, "big"),
        parent_span_id=parent.to_bytes(8, "big") if parent else None,
    )


def ready_ids(ready) -> list[tuple[int, list[int], str | None]]:
    return [
        (int.from_bytes(r.trace_id, "big"), sorted(int.from_bytes(s.span_id, "big") for s in r.spans), r.state)
        for r in ready
    ]


def test_trace_waits_for_root_then_quiet_period():
    buffer = TraceBuffer(grace_seconds=5, max_wait_seconds=100, max_spans=100)
    buffer.add([span(1, 3, 2), span(1, 2, 1)], now=0)  # children first
    assert buffer.take_ready(now=50) == []  # no root yet
    buffer.add([span(1, 1, None)], now=50)
    assert buffer.take_ready(now=54) == []  # root, but not quiet long enough
    assert ready_ids(buffer.take_ready(now=55)) == [(1, [1, 2, 3], None)]
    assert buffer.span_count == 0 and buffer.trace_count == 0


def test_late_span_restarts_the_quiet_period():
    buffer = TraceBuffer(grace_seconds=5, max_wait_seconds=100, max_spans=100)
    buffer.add([span(1, 1, None)], now=0)
    buffer.add([span(1, 2, 1)], now=4)
    assert buffer.take_ready(now=6) == []
    assert ready_ids(buffer.take_ready(now=9)) == [(1, [1, 2], None)]


def test_max_wait_without_root_marks_no_root():
    buffer = TraceBuffer(grace_seconds=1, max_wait_seconds=10, max_spans=100)
    buffer.add([span(7, 2, 1)], now=0)
    buffer.add([span(7, 3, 1)], now=9)
    assert buffer.take_ready(now=9.5) == []
    assert ready_ids(buffer.take_ready(now=10)) == [(7, [2, 3], STITCH_NO_ROOT)]


def test_busy_trace_leaves_after_max_wait_even_if_never_quiet():
    buffer = TraceBuffer(grace_seconds=5, max_wait_seconds=10, max_spans=100)
    buffer.add([span(1, 1, None)], now=0)
    for t in range(1, 12):
        buffer.add([span(1, 100 + t, 1)], now=t)
    assert ready_ids(buffer.take_ready(now=11)) == [(1, [1] + list(range(101, 112)), None)]


def test_memory_limit_writes_oldest_traces_early():
    buffer = TraceBuffer(grace_seconds=5, max_wait_seconds=100, max_spans=4)
    buffer.add([span(1, 1, 9), span(1, 2, 9)], now=0)
    buffer.add([span(2, 1, 9), span(2, 2, 9)], now=1)
    buffer.add([span(3, 1, 9)], now=2)
    assert buffer.span_count == 5
    assert ready_ids(buffer.take_ready(now=2)) == [(1, [1, 2], STITCH_EARLY)]
    assert buffer.span_count == 3


def test_resent_span_replaces_and_drain_marks_shutdown():
    buffer = TraceBuffer(grace_seconds=5, max_wait_seconds=100, max_spans=100)
    buffer.add([span(1, 1, None), span(1, 1, None)], now=0)
    assert buffer.span_count == 1
    buffer.add([span(2, 5, 4)], now=0)
    assert ready_ids(buffer.drain()) == [(1, [1], STITCH_SHUTDOWN), (2, [5], STITCH_SHUTDOWN)]


def test_traces_holding_the_oldest_wal_segments_leave_early():
    """The WAL nears its limit: traces with a span in segments <= 2 go (early_flush), whatever their age."""
    buffer = TraceBuffer(grace_seconds=5, max_wait_seconds=100, max_spans=100)
    buffer.add([span(1, 2, 1)], now=0, segment=1)  # root-less, in the oldest segment
    buffer.add([span(2, 2, 1)], now=1, segment=3)
    buffer.add([span(3, 2, 1)], now=2, segment=3)
    buffer.add([span(3, 3, 1)], now=3, segment=2)  # a later request may land in an older segment (replay)
    buffer.add([span(1, 3, 1)], now=4, segment=4)  # its oldest segment stays 1
    pinning = buffer.take_pinning(through_segment=2)  # least recently active first
    assert ready_ids(pinning) == [(3, [2, 3], STITCH_EARLY), (1, [2, 3], STITCH_EARLY)]
    assert buffer.trace_ids() == [(2).to_bytes(16, "big")] and buffer.span_count == 1
    assert buffer.take_pinning(through_segment=2) == []
