"""Live state: the tasks and agent runs in flight right now (the KEDA demand signal).

Spans are exported when they END, so children arrive before their parents: a trace with spans seen and
no root span yet is a run still going. A trace is in flight from its first span until its root span
(no parent_span_id) arrives, or until the trace buffer hands it on (`trace_finished`, which also drops
traces that went quiet past the buffer's max wait). Each in-flight trace counts as one agent run of:
  - agent: the first own agent identity seen on its spans (agent spans preferred), else service.name;
  - namespace: k8s_namespace; service: service_name (first seen).
`tasks` counts in-flight traces not known to be sub-agent traces (no span link seen on them yet; a
sub-agent's link is on its root, which arrives last, so a running sub-agent trace counts as a task until
then: an over-count on the side of more capacity, documented).

Arrivals: each new trace is also recorded as a claim arrival (the moment its first span was seen) for
`MAX_RATE_WINDOW_S`, so `claims_in_window` can say how many runs of an agent started recently: the warm-pool
target of collector_ext/keda/target.py. A run counts under the identity the trace ends up with.

Cheap: O(spans) dict work per request under one lock. Bounded: at most `max_traces` traces (the oldest
are dropped past it), the arrivals of the last hour (at most `max_traces`) and a bounded memory of recently
ended traces so late spans do not revive them.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

from collector_ext.keda.target import MAX_RATE_WINDOW_S
from collector_ext.schema import CATEGORY_AGENT
from collector_ext.traces.span_refs import SpanRef


@dataclass(slots=True)
class _Flight:
    agent: str | None
    agent_rank: int  # 0 none, 1 service.name, 2 own identity of a span, 3 of an agent span
    namespace: str | None
    service: str | None
    linked: bool


class LiveState:
    def __init__(self, max_traces: int = 1_000_000, clock: Callable[[], float] = time.monotonic) -> None:
        self._max_traces = max(1, max_traces)
        self._clock = clock
        self._arrivals: deque[tuple[float, _Flight]] = deque()  # (when the trace was first seen, its flight)
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._version = 0
        self._flights: OrderedDict[bytes, _Flight] = OrderedDict()
        self._ended: OrderedDict[bytes, None] = OrderedDict()
        self._agents: Counter[str] = Counter()
        self._namespaces: Counter[str] = Counter()
        self._services: Counter[str] = Counter()
        self._tasks = 0

    # -- updates (ingest path) ------------------------------------------------------------------------------

    def spans_seen(self, spans: list[SpanRef]) -> None:
        with self._lock:
            before = self._version
            current: bytes | None = None
            flight: _Flight | None = None
            for span in spans:
                trace_id = span.trace_id
                if trace_id != current:  # an export's spans come in runs per trace: look it up once per run
                    current = trace_id
                    flight = None if trace_id in self._ended else self._flights.get(trace_id)
                    if flight is None and trace_id not in self._ended:
                        flight = _Flight(None, 0, span.k8s_namespace, span.service_name, False)
                        self._flights[trace_id] = flight
                        self._count(flight, +1)
                        self._arrive(flight)
                        self._version += 1
                if flight is None:  # ended
                    continue
                # only a span with its own agent identity or links can teach more than the first span did
                if span.agent_name or span.links or not flight.agent_rank:
                    self._learn(flight, span)
                if not span.parent_span_id:  # the root ended: the run is over
                    self._end(trace_id)
                    flight = None
            while len(self._flights) > self._max_traces:
                oldest = next(iter(self._flights))
                self._end(oldest)
            if self._version != before:
                self._changed.notify_all()

    def trace_finished(self, trace_id: bytes) -> None:
        with self._lock:
            if trace_id in self._flights:
                self._end(trace_id)
                self._changed.notify_all()
            # The buffer handed the trace on; late spans of it must not start a new flight.
            self._remember_ended(trace_id)

    # -- queries ------------------------------------------------------------------------------------------

    def in_flight(self, agent: str | None = None, namespace: str | None = None, service: str | None = None) -> int:
        with self._lock:
            given = [(k, v) for k, v in (("agent", agent), ("namespace", namespace), ("service", service)) if v]
            if not given:
                return len(self._flights)
            if len(given) == 1:
                key, value = given[0]
                counter = {"agent": self._agents, "namespace": self._namespaces, "service": self._services}[key]
                return counter.get(value, 0)
            return sum(
                1
                for f in self._flights.values()
                if (agent is None or f.agent == agent)
                and (namespace is None or f.namespace == namespace)
                and (service is None or f.service == service)
            )

    def claims_in_window(
        self,
        window_s: float,
        agent: str | None = None,
        namespace: str | None = None,
        service: str | None = None,
    ) -> int:
        """Runs (traces) matching the selector that started in the last `window_s` seconds (at most an hour)."""
        with self._lock:
            now = self._clock()
            self._forget_arrivals(now)
            since = now - min(window_s, MAX_RATE_WINDOW_S)
            count = 0
            for seen, flight in reversed(self._arrivals):
                if seen <= since:
                    break
                if (
                    (agent is None or flight.agent == agent)
                    and (namespace is None or flight.namespace == namespace)
                    and (service is None or flight.service == service)
                ):
                    count += 1
            return count

    def snapshot(self) -> dict:
        with self._lock:
            return {
                "version": self._version,
                "tasks": self._tasks,
                "agent_runs": len(self._flights),
                "agents": dict(self._agents),
                "namespaces": dict(self._namespaces),
                "services": dict(self._services),
            }

    @property
    def version(self) -> int:
        with self._lock:
            return self._version

    def wait_changed(self, version: int, timeout: float) -> int:
        """Block until the state's version differs from `version` (or `timeout` s); returns the version."""
        with self._changed:
            self._changed.wait_for(lambda: self._version != version, timeout=max(0.0, timeout))
            return self._version

    # -- internals (lock held) ----------------------------------------------------------------------------

    def _learn(self, flight: _Flight, span: SpanRef) -> None:
        name: str | None
        if span.agent_name:
            name, rank = span.agent_name, 3 if span.category == CATEGORY_AGENT else 2
        else:
            name, rank = span.service_name, 1
        better_agent = bool(name) and rank > flight.agent_rank
        linked = bool(span.links) and not flight.linked
        if not (better_agent or linked):
            return
        self._count(flight, -1)
        if better_agent:
            flight.agent, flight.agent_rank = name, rank
        if linked:
            flight.linked = True
        self._count(flight, +1)
        self._version += 1

    def _count(self, flight: _Flight, delta: int) -> None:
        for counter, key in ((self._agents, flight.agent), (self._namespaces, flight.namespace)):
            if key:
                counter[key] += delta
                if counter[key] <= 0:
                    del counter[key]
        if flight.service:
            self._services[flight.service] += delta
            if self._services[flight.service] <= 0:
                del self._services[flight.service]
        if not flight.linked:
            self._tasks += delta

    def _arrive(self, flight: _Flight) -> None:
        now = self._clock()
        self._arrivals.append((now, flight))
        self._forget_arrivals(now)
        while len(self._arrivals) > self._max_traces:
            self._arrivals.popleft()

    def _forget_arrivals(self, now: float) -> None:
        while self._arrivals and self._arrivals[0][0] <= now - MAX_RATE_WINDOW_S:
            self._arrivals.popleft()

    def _end(self, trace_id: bytes) -> None:
        flight = self._flights.pop(trace_id, None)
        if flight is not None:
            self._count(flight, -1)
            self._version += 1
        self._remember_ended(trace_id)

    def _remember_ended(self, trace_id: bytes) -> None:
        self._ended[trace_id] = None
        self._ended.move_to_end(trace_id)
        while len(self._ended) > self._max_traces:
            self._ended.popitem(last=False)
