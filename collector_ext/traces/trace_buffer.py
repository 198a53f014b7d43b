"""Holding spans per trace until the whole trace can be attributed.

Spans are exported when they end, so a trace arrives children first, over many requests. A trace is
handed on (to stitching, then Parquet) when:

- its root span (no parent) has arrived and no span of it has arrived for `grace_seconds`; or
- it has been held `max_wait_seconds` since its first span (root or not: stitch_state `no_root` when the
  root never came); or
- more than `max_spans` spans are held: the traces first seen longest ago go early (`early_flush`); or
- the receiver shuts down: everything held goes (`shutdown_flush`);
- the write-ahead log nears its limit (`--max-pending-mib`) and the trace holds spans of its oldest
  segments: a trace whose root never comes must not keep those segments, and so the receiver, from taking
  more data (`take_pinning`, `early_flush`).

Not thread-safe: the pipeline serialises access.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from collector_ext.schema import STITCH_EARLY, STITCH_NO_ROOT, STITCH_SHUTDOWN
from collector_ext.traces.span_refs import SpanRef

NO_SEGMENT = 1 << 62  # a trace none of whose spans is in the WAL yet (refs made by hand)


@dataclass(slots=True)
class HeldTrace:
    first_seen: float
    last_seen: float
    has_root: bool = False
    oldest_segment: int = NO_SEGMENT  # the oldest WAL segment holding one of its spans
    spans: dict[bytes, SpanRef] = field(default_factory=dict)  # span_id -> ref (a re-sent span replaces)


@dataclass(slots=True)
class ReadyTrace:
    trace_id: bytes
    spans: list[SpanRef]
    state: str | None  # None: complete; else one of the early stitch states


class TraceBuffer:
    def __init__(self, grace_seconds: float, max_wait_seconds: float, max_spans: int) -> None:
        self.grace_seconds = grace_seconds
        self.max_wait_seconds = max_wait_seconds
        self.max_spans = max_spans
        # ordered by last activity, oldest first: the scan for quiet traces stops at the first busy one
        self._traces: OrderedDict[bytes, HeldTrace] = OrderedDict()
        self.span_count = 0
        self._next_expiry_scan = 0.0

    @property
    def trace_count(self) -> int:
        return len(self._traces)

    def add(self, spans: list[SpanRef], now: float, segment: int = NO_SEGMENT) -> list[SpanRef]:
        """Hold `spans` (of one request, in WAL segment `segment`); returns the refs they replaced (a span sent
        again replaces the one held)."""
        traces = self._traces
        current: bytes | None = None
        held_spans: dict[bytes, SpanRef] = {}
        held: HeldTrace  # set on the first span: its trace id differs from None
        added = 0
        replaced: list[SpanRef] = []
        for ref in spans:
            trace_id = ref.trace_id
            if trace_id != current:  # an export's spans come in runs per trace: look the trace up once per run
                current = trace_id
                found = traces.get(trace_id)
                if found is None:
                    held = traces[trace_id] = HeldTrace(first_seen=now, last_seen=now, oldest_segment=segment)
                else:
                    held = found
                    held.last_seen = now
                    if segment < held.oldest_segment:
                        held.oldest_segment = segment
                    traces.move_to_end(trace_id)
                held_spans = held.spans
            span_id = ref.span_id
            before = held_spans.get(span_id)
            if before is None:
                added += 1
            else:
                replaced.append(before)
            held_spans[span_id] = ref
            if not ref.parent_span_id:
                held.has_root = True
        self.span_count += added
        return replaced

    def take_ready(self, now: float) -> list[ReadyTrace]:
        """Remove and return the traces that are due at `now`."""
        quiet_before = now - self.grace_seconds
        expired_before = now - self.max_wait_seconds
        due: dict[bytes, str | None] = {}
        for trace_id, held in self._traces.items():
            if held.last_seen > quiet_before:
                break  # ordered by last activity: every later trace is busier still
            if held.has_root:
                due[trace_id] = None
            elif held.first_seen <= expired_before:
                due[trace_id] = STITCH_NO_ROOT
        if now >= self._next_expiry_scan:
            # traces that never go quiet (long tasks streaming spans) still leave after max wait
            self._next_expiry_scan = now + min(self.max_wait_seconds / 10, 5.0)
            for trace_id, held in self._traces.items():
                if held.first_seen <= expired_before and trace_id not in due:
                    due[trace_id] = None if held.has_root else STITCH_NO_ROOT
        ready = [self._pop(trace_id, state) for trace_id, state in due.items()]
        if self.span_count > self.max_spans:
            by_age = sorted(self._traces.items(), key=lambda item: item[1].first_seen)
            for trace_id, _ in by_age:
                if self.span_count <= self.max_spans:
                    break
                ready.append(self._pop(trace_id, STITCH_EARLY))
        return ready

    def take_pinning(self, through_segment: int) -> list[ReadyTrace]:
        """Remove and return (as `early_flush`) every trace holding a span of a WAL segment <= `through_segment`:
        the write-ahead log is near its limit and these traces keep its oldest segments from retiring."""
        pinning = [t for t, held in self._traces.items() if held.oldest_segment <= through_segment]
        return [self._pop(trace_id, STITCH_EARLY) for trace_id in pinning]

    def drain(self) -> list[ReadyTrace]:
        """Everything still held, for shutdown."""
        return [self._pop(trace_id, STITCH_SHUTDOWN) for trace_id in list(self._traces)]

    def trace_ids(self) -> list[bytes]:
        return list(self._traces)

    def _pop(self, trace_id: bytes, state: str | None) -> ReadyTrace:
        held = self._traces.pop(trace_id)
        self.span_count -= len(held.spans)
        return ReadyTrace(trace_id, list(held.spans.values()), state)
