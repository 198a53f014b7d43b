"""Runaway tasks, flagged while they run: spawn loops, retry storms, tool loops, tasks that cost too much.

A task is a tree of traces tied by span links (DESIGN "Stitching"). Its traces end bottom-up and the
stitcher sees a trace only once it is whole, so this watch follows tasks at accept, from the spans as they
arrive: a span link on a trace's root (or one of its agent spans) makes the trace a sub-agent of the
linked trace, and the two tasks become one. Per task, so far:

    subagents     sub-agent traces linked under the task (fan-out)
    depth         the longest chain of links below the task's top trace (a spawn loop grows it)
    tool_repeats  the most calls of one tool with the same arguments (`gen_ai.tool.call.arguments`; the tool
                  name alone where none are reported): a tool loop
    llm_calls     LLM and embedding calls (a response id seen twice in the task is one call)
    failed_calls  of those, the calls that ended in error: a retry storm
    cost_usd      the token cost of those calls, priced live as the analyzer prices them

A value past its limit flags the task once per reason: `agentmeter_runaway_tasks{agent,reason}` (tasks in
flight flagged now), `agentmeter_runaway_tasks_flagged_total{agent,reason}`, and one structured log line
`runaway task` with the task id, root agent, reason, value, limit and its basis. The limit of a reason is
its threshold (`RunawayThresholds`); once the root agent has `history_min_tasks` finished tasks, it is
min(threshold, max(history_factor x p99 of the agent's last HISTORY_TASKS tasks, threshold / history_factor)):
an agent whose tasks are small is flagged earlier, never on noise below threshold / factor. The analyzer
applies the same rules after the fact (analyzer/runaway.py: `analyze runaway`), held equal by a test.

A task ends when the trace buffer hands its top trace on (quiet after its root: sub-agents exported by
other pods have had the grace period to arrive); its figures join its agent's history. Bounded: at most
`max_traces` traces followed (the oldest task goes first), a memory of ended traces so late spans do not
revive a task, HISTORY_TASKS values per agent and reason, HISTORY_AGENTS agents.
"""

from __future__ import annotations

import math
import threading
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import structlog
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from collector_ext.pricing.live import PRICED_COLUMNS, SCALE, CallPrices, LivePrices, usd
from collector_ext.schema import CATEGORY_AGENT, CATEGORY_TOOL, INFERENCE_CATEGORIES
from collector_ext.traces.span_refs import SpanRef, pricing_model, row_table
from collector_ext.traces.stitching import agent_run_name

log = structlog.get_logger("agentmeter.runaway")

REASONS = ("subagents", "depth", "tool_repeats", "llm_calls", "failed_calls", "cost_usd")
HISTORY_TASKS = 1000
HISTORY_AGENTS = 1000
TOOL_ARGUMENTS = "gen_ai.tool.call.arguments"
STATUS_ERROR = "error"
MAX_WALK = 10_000
INFERENCE_COLUMNS = ("status_code", "response_id", "provider", "response_model", "request_model", "start_time",
                     *PRICED_COLUMNS)  # fmt: skip
TOOL_COLUMNS = ("tool_name", "attributes")


_BEST_RANK = 3  # _Task.agent_rank of a name from an agent span: the best
_BELOW_ANY_LIMIT = 1 - 1e-9  # a cost this share of a limit or less is below it, float rounding aside


@dataclass(frozen=True)
class RunawayThresholds:
    subagents: int = 50
    depth: int = 6
    tool_repeats: int = 20
    llm_calls: int = 200
    failed_calls: int = 20
    cost_usd: float = 5.0
    history_factor: float = 3.0
    history_min_tasks: int = 50

    def threshold(self, reason: str) -> float:
        return float(getattr(self, reason))


def quantile_cont(values: list[float], q: float) -> float:
    """Linear interpolation between the closest ranks: DuckDB's quantile_cont (and numpy's default)."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low = math.floor(position)
    high = math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def limit_for(thresholds: RunawayThresholds, reason: str, history: list[float]) -> tuple[float, str]:
    """The limit of one reason for an agent with these past tasks' values, and its basis."""
    p99 = quantile_cont(history, 0.99) if history else None
    return limit_from(thresholds, reason, p99, len(history))


def limit_from(thresholds: RunawayThresholds, reason: str, p99: float | None, tasks: int) -> tuple[float, str]:
    """The limit of one reason given the p99 of the agent's last `tasks` (at most HISTORY_TASKS) past tasks:
    its threshold, or history's lower limit (basis "history") once there are `history_min_tasks` of them."""
    threshold = thresholds.threshold(reason)
    if p99 is None or tasks < thresholds.history_min_tasks:
        return threshold, "threshold"
    factor = thresholds.history_factor
    learned = max(factor * p99, threshold / factor)
    return (learned, "history") if learned < threshold else (threshold, "threshold")


@dataclass(slots=True)
class _Task:
    top: bytes
    agent: str | None = None
    agent_rank: int = 0  # 0 none, 1 service.name, 2 own identity of a span, 3 of an agent span (_BEST_RANK)
    subagents: int = 0
    depth: int = 0  # the deepest trace below the top, in links
    llm_calls: int = 0
    failed_calls: int = 0
    cost_units: int = 0
    tools: Counter = field(default_factory=Counter)
    tool_repeats: int = 0
    responses: set[str] = field(default_factory=set)
    flagged: dict[str, tuple[float, float, str]] = field(default_factory=dict)  # reason -> (value, limit, basis)
    members: list[bytes] = field(default_factory=list)  # the task's traces but its top

    def value(self, reason: str) -> float:
        if reason == "cost_usd":
            return usd(self.cost_units)
        return float(getattr(self, reason))


@dataclass(slots=True)
class _Trace:
    parent: bytes | None = None  # the linked parent trace (None: the top of its task)
    task: _Task | None = None  # set on tops only
    subtree_depth: int = 0  # the deepest chain of links below this trace (tops: the task's depth)


@dataclass(frozen=True)
class _InferenceCalls:
    """What the watch reads of a request's inference spans, as columns: their response ids, whether each
    failed, and their price rows and token counts (only calls with usage are priced)."""

    response_ids: list[str | None]
    failed: list[bool]
    prices: CallPrices
    tokens: np.ndarray  # int64, one row per call, PRICED_COLUMNS order (the modality parts priced too)

    @classmethod
    def read(cls, spans: list[SpanRef], prices: LivePrices) -> _InferenceCalls:
        table = row_table(spans, INFERENCE_COLUMNS)
        usage = np.fromiter((span.has_usage for span in spans), dtype=bool, count=len(spans))
        tokens = np.column_stack([pc.fill_null(table.column(c), 0).to_numpy() for c in PRICED_COLUMNS])
        start_ns = table.column("start_time").cast(pa.int64()).to_numpy()
        located = prices.locate(table.column("provider"), pricing_model(table), start_ns, tokens[:, 0], usage)
        failed = pc.fill_null(pc.equal(table.column("status_code"), STATUS_ERROR), False)
        return cls(table.column("response_id").to_pylist(), failed.to_pylist(), located, tokens)


def _tool_keys(tools: list[SpanRef]) -> list[tuple[str | None, str | None]]:
    """Each tool call's (tool, arguments): the tool's name (else the span's) and its arguments attribute
    (the last value of the key, as a dict of the attributes keeps)."""
    table = row_table(tools, TOOL_COLUMNS)
    arguments = pc.map_lookup(table.column("attributes"), TOOL_ARGUMENTS, "last").to_pylist()
    names = table.column("tool_name").to_pylist()
    return [(name or span.name, argument) for span, name, argument in zip(tools, names, arguments, strict=True)]


class RunawayWatch:
    def __init__(
        self,
        prices: LivePrices,
        thresholds: RunawayThresholds | None = None,
        agent_label: Callable[[str | None], str] = lambda agent: agent or "",
        max_traces: int = 1_000_000,
    ) -> None:
        self.prices = prices
        self.thresholds = thresholds or RunawayThresholds()
        self.agent_label = agent_label
        self._max_traces = max(1, max_traces)
        self._traces: OrderedDict[bytes, _Trace] = OrderedDict()
        self._ended: OrderedDict[bytes, None] = OrderedDict()
        self._history: OrderedDict[str, dict[str, deque[float]]] = OrderedDict()
        self._limits: dict[str, dict[str, tuple[float, str]]] = {}  # agent -> reason -> limit (cached)
        self._flagged_total: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()

    # -- the ingest path --------------------------------------------------------------------------------

    def spans_seen(self, spans: list[SpanRef]) -> None:
        inference = [s for s in spans if s.category in INFERENCE_CATEGORIES]
        tools = [s for s in spans if s.category == CATEGORY_TOOL]
        calls = _InferenceCalls.read(inference, self.prices) if inference else None
        tool_keys = _tool_keys(tools) if tools else []
        with self._lock:
            touched: dict[int, _Task] = {}
            current: bytes | None = None
            task: _Task | None = None
            for span in spans:
                if span.trace_id != current:  # an export's spans come in runs per trace
                    current = span.trace_id
                    task = None if current in self._ended else self._task_of(current)
                    if task is not None:
                        touched[id(task)] = task
                if task is None:
                    continue
                if task.agent_rank < _BEST_RANK:  # an agent span of the top trace named it: nothing ranks higher
                    self._learn_agent(task, span)
                if span.links and (not span.parent_span_id or span.category == CATEGORY_AGENT):
                    task = self._link(span)
                    touched[id(task)] = task
            if calls is not None:
                self._count_calls(inference, calls)
            current, task = None, None
            for span, key in zip(tools, tool_keys, strict=True):
                if span.trace_id != current:
                    current = span.trace_id
                    task = None if current in self._ended else self._task_of(current)
                if task is None:
                    continue
                task.tools[key] += 1
                task.tool_repeats = max(task.tool_repeats, task.tools[key])
            for task in touched.values():
                entry = self._traces.get(task.top)
                if entry is not None and entry.task is task:  # not merged into another task meanwhile
                    self._check(task)
            while len(self._traces) > self._max_traces:
                oldest = self._task_of(next(iter(self._traces)))
                touched.pop(id(oldest), None)
                self._forget(oldest)

    def _count_calls(self, inference: list[SpanRef], calls: _InferenceCalls) -> None:
        """LLM calls, failed calls and their cost per task (lock held); a response id seen before in the task
        is the same call. Costs are summed per task and price row (exact integers: linear in the tokens)."""
        tasks: list[_Task] = []
        task_code: dict[int, int] = {}
        code_of = np.full(len(inference), -1, dtype=np.int64)
        current: bytes | None = None
        task: _Task | None = None
        for position, (span, response_id, failed) in enumerate(
            zip(inference, calls.response_ids, calls.failed, strict=True)
        ):
            if span.trace_id != current:  # runs per trace; tasks do not merge in this loop
                current = span.trace_id
                task = None if current in self._ended else self._task_of(current)
            if task is None:
                continue
            if response_id:
                if response_id in task.responses:
                    continue
                task.responses.add(response_id)
            task.llm_calls += 1
            task.failed_calls += failed
            code = task_code.get(id(task))
            if code is None:
                code = task_code[id(task)] = len(tasks)
                tasks.append(task)
            code_of[position] = code
        priced = (code_of >= 0) & calls.prices.priced
        if not priced.any():
            return
        rows = len(calls.prices.rows)
        key = code_of[priced] * rows + calls.prices.row[priced]
        groups, group_of = np.unique(key, return_inverse=True)
        group_of = group_of.reshape(-1)
        tokens = np.zeros((len(groups), calls.tokens.shape[1]), dtype=np.int64)
        np.add.at(tokens, group_of, calls.tokens[priced])
        count = np.bincount(group_of, minlength=len(groups))
        for group, summed, n in zip(groups.tolist(), tokens.tolist(), count.tolist(), strict=True):
            tasks[group // rows].cost_units += calls.prices.rows[group % rows].cost(summed, n)

    def trace_finished(self, trace_id: bytes) -> None:
        """The trace buffer handed the trace on: a task ends with its top trace."""
        with self._lock:
            entry = self._traces.get(trace_id)
            if entry is None or entry.parent is not None:
                return
            assert entry.task is not None
            self._end(entry.task)

    # -- queries (scrape time) ----------------------------------------------------------------------------

    def families(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        with self._lock:
            now: Counter[tuple[str, str]] = Counter()
            for entry in self._traces.values():
                if entry.task is not None:
                    for reason in entry.task.flagged:
                        now[(self.agent_label(entry.task.agent), reason)] += 1
            total = dict(self._flagged_total)
        gauge = GaugeMetricFamily(
            "agentmeter_runaway_tasks",
            "Tasks in flight flagged as runaway, by root agent and reason (subagents, depth, tool_repeats, "
            "llm_calls, failed_calls, cost_usd).",
            labels=["agent", "reason"],
        )
        for (agent, reason), count in sorted(now.items()):
            gauge.add_metric([agent, reason], count)
        counter = CounterMetricFamily(
            "agentmeter_runaway_tasks_flagged",
            "Tasks flagged as runaway, by root agent and reason.",
            labels=["agent", "reason"],
        )
        for (agent, reason), count in sorted(total.items()):
            counter.add_metric([agent, reason], count)
        yield gauge
        yield counter

    def flagged(self) -> list[dict]:
        """The tasks in flight flagged now (tests, debugging)."""
        with self._lock:
            return [
                {"task_id": e.task.top.hex(), "root_agent": e.task.agent, "reason": reason, "value": value,
                 "threshold": limit, "basis": basis}
                for e in self._traces.values() if e.task is not None
                for reason, (value, limit, basis) in sorted(e.task.flagged.items())
            ]  # fmt: skip

    # -- internals (lock held) ------------------------------------------------------------------------------

    def _entry(self, trace_id: bytes) -> _Trace:
        entry = self._traces.get(trace_id)
        if entry is None:
            entry = self._traces[trace_id] = _Trace(task=_Task(top=trace_id))
        return entry

    def _top(self, trace_id: bytes) -> tuple[bytes, int]:
        """The top trace of a trace's task and how many links below it the trace is."""
        node, steps = trace_id, 0
        while steps < MAX_WALK:
            parent = self._entry(node).parent
            if parent is None:
                return node, steps
            node, steps = parent, steps + 1
        return node, steps

    def _task_of(self, trace_id: bytes) -> _Task:
        top, _ = self._top(trace_id)
        task = self._traces[top].task
        assert task is not None
        return task

    def _learn_agent(self, task: _Task, span: SpanRef) -> None:
        if span.trace_id != task.top:
            return  # the task's agent is its top trace's
        name: str | None
        if span.category == CATEGORY_AGENT:  # named as stitching names agent runs
            name, rank = agent_run_name(span), 3
        elif span.agent_name:
            name, rank = span.agent_name, 2
        else:
            name, rank = span.service_name, 1
        if name and rank > task.agent_rank:
            task.agent, task.agent_rank = name, rank

    def _link(self, span: SpanRef) -> _Task:
        """The span's trace becomes a sub-agent of the first other trace it links to; their tasks merge."""
        child = self._entry(span.trace_id)
        parent_id = next((t for t, _ in span.links if t != span.trace_id), None)
        if child.parent is not None or parent_id is None or parent_id in self._ended:
            return self._task_of(span.trace_id)
        top, depth = self._top(parent_id)
        if top == span.trace_id:  # the link closes a cycle: keep the trees apart
            return self._task_of(span.trace_id)
        child_task = child.task
        assert child_task is not None
        task = self._traces[top].task
        assert task is not None
        child.parent, child.task = parent_id, None
        task.subagents += child_task.subagents + 1
        task.depth = max(task.depth, depth + 1 + child_task.depth)
        task.llm_calls += child_task.llm_calls
        task.failed_calls += child_task.failed_calls
        task.cost_units += child_task.cost_units
        task.responses |= child_task.responses
        task.tools.update(child_task.tools)
        task.tool_repeats = max(task.tool_repeats, max(task.tools.values(), default=0))
        task.members += [span.trace_id, *child_task.members]
        for reason, flag in child_task.flagged.items():
            task.flagged.setdefault(reason, flag)
        return task

    def _limit(self, agent: str | None, reason: str) -> tuple[float, str]:
        cached = self._limits.get(agent or "")
        if cached is None:
            history = self._history.get(agent or "", {})
            cached = {r: limit_for(self.thresholds, r, list(history.get(r, ()))) for r in REASONS}
            self._limits[agent or ""] = cached
        return cached[reason]

    def _check(self, task: _Task) -> None:
        for reason in REASONS:
            if reason in task.flagged:
                continue
            limit, basis = self._limit(task.agent, reason)
            if reason == "cost_usd" and task.cost_units < limit * _BELOW_ANY_LIMIT * SCALE:
                continue  # far enough below the limit that the exact value (a Fraction) need not be made
            value = task.value(reason)
            if value > limit:
                task.flagged[reason] = (value, limit, basis)
                self._flagged_total[(self.agent_label(task.agent), reason)] += 1
                log.warning(
                    "runaway task",
                    task_id=task.top.hex(),
                    root_agent=task.agent,
                    reason=reason,
                    value=value,
                    threshold=limit,
                    basis=basis,
                )

    def _end(self, task: _Task) -> None:
        agent = task.agent or ""
        history = self._history.get(agent)
        if history is None:
            history = self._history[agent] = {r: deque(maxlen=HISTORY_TASKS) for r in REASONS}
            while len(self._history) > HISTORY_AGENTS:
                self._history.popitem(last=False)
                self._limits.clear()
        self._history.move_to_end(agent)
        for reason in REASONS:
            history[reason].append(task.value(reason))
        self._limits.pop(agent, None)
        self._forget(task)

    def _forget(self, task: _Task) -> None:
        """Drop a task: its top and every trace under it, remembered as ended."""
        for trace in (task.top, *task.members):
            self._traces.pop(trace, None)
            self._ended[trace] = None
        while len(self._ended) > self._max_traces:
            self._ended.popitem(last=False)
