"""The spans this receiver wrote recently, so that a batch sent again is not written twice.

OTLP delivery is at least once: a client that never got its answer (a timeout, the receiver killed between
the WAL write and the reply) sends the same batch again. While the first copy's trace is still held, the
trace buffer replaces it (nothing twice); once the trace was written, only a memory of what was written can
tell. This is that memory: the (trace_id, span_id) of the last `capacity` spans handed to the writer,
oldest forgotten first (~100 bytes each). A copy arriving after it was forgotten is written again, and the
analyzer, which reads rows unique by (trace_id, span_id), still counts it once.
"""

from __future__ import annotations

from collections import deque

from collector_ext.traces.span_refs import SpanRef


class RecentSpans:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._keys: set[bytes] = set()
        self._order: deque[bytes] = deque()

    def __len__(self) -> int:
        return len(self._keys)

    def fresh(self, spans: list[SpanRef]) -> list[SpanRef]:
        """The spans of `spans` not written recently, now remembered as written."""
        if self.capacity <= 0:
            return spans
        keys, order = self._keys, self._order
        fresh = []
        for span in spans:
            key = span.trace_id + span.span_id
            if key in keys:
                continue
            keys.add(key)
            order.append(key)
            fresh.append(span)
        while len(order) > self.capacity:
            keys.discard(order.popleft())
        return fresh
