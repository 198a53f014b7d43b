"""The stitching rules, in memory: spans -> agent runs -> tasks (DESIGN.md "Stitching").

These rules exist twice, written once each: here (the receiver, one trace at a time) and in
`analyzer/sql/tasks*.sql` (the whole dataset, authoritative). `tests/test_stitching_equivalence.py` runs
the same scenarios through both and holds the answers equal. The rules:

Agent runs and attribution (within one trace)
  - An agent run is a span whose `category` is `agent` (dialects map `agent.loop`, `invoke_agent` and
    the other dialects' agent kinds to it) and that runs no graph node, or the run of a graph: the parent
    span of a span that runs a graph node (`graph_node`, dialects.py). LangGraph runs an agent as a graph
    (named for the agent) whose nodes are its steps: each ReAct step is a node span that OpenInference
    marks AGENT, and is not a run of its own; a sub-graph (an agent called as a tool, or a graph used as a
    node) is a run of its own, nested under the run that called it.
  - Except a wrapper: an agent run with no llm, embedding, tool or retrieval span of its own (attributed to
    it) and exactly one agent run directly inside it. Such spans are what instrumentations put around a
    framework's run (OpenInference openai-agents' "Agent workflow", a graph whose only node is a sub-graph);
    the run inside is the agent run, and the wrapper's spans belong to the trace's top run.
  - Every span is attributed to its nearest enclosing agent run in the trace (itself for an agent span),
    walking parent_span_id. A span outside every agent run is attributed to the trace's TOP agent run:
    the agent run with no agent run above it that started first (ties: smallest span_id). In a trace with
    no agent run at all the span keeps its own agent_name (else service_name) and agent_span_id,
    agent_depth and parent_agent_name are None.
  - Agent name, in order: the agent span's own agent identity (gen_ai.agent.name or the dialect's
    equivalent, filled by dialects), its span name unless generic (`agent.loop`, `invoke_agent`, ...;
    `invoke_agent X` gives `X`), the service name.
  - Nesting: an agent run under another agent run in the same trace has depth parent + 1 and that
    parent's name as parent_agent_name. A trace's top-level agent runs (no agent run above them) take
    their parent from the trace's parent link (below): the agent run the linked span is attributed to,
    depth = its depth + 1; with no linked parent agent: depth 0, parent_agent_name None.

Parent links and tasks (across traces)
  - A trace's roots are its spans with no parent or whose parent is not in the trace. Its parent links
    are the links on its roots; if none carries a link, the links on its top-level agent runs.
  - Self-link (a link into the trace itself): ignored; a trace whose only links are self-links is its
    own task top, state `self_link`.
  - A link target EXISTS when its trace was seen (receiver: written by this receiver and still in the
    index; analyzer: in the dataset). Links to traces never seen: the trace is a top, `missing_parent`
    (the receiver says `pending_parent`: the parent may still come; the analyzer resolves it later).
  - Two or more parents: the parent is the smallest (trace_id, span_id) among the targets that exist;
    state `multi_parent` when the existing targets lie in more than one trace.
  - The parent agent of a linked trace is the agent run the linked span is attributed to; if that span
    was not written (e.g. `--keep genai`) the parent trace's top agent run.
  - task_id = trace_id of the top reached by following parents. Cycle: the trace with the smallest
    trace_id in the cycle becomes the top (its own parent link is cut) and every trace of the cycle is
    marked `cycle`; traces hanging off a cycle join that task. Walks are bounded, never a hang.
  - Shared calls (whole dataset only): tasks whose traces hold copies of one inference call (llm/embedding
    spans with the same response_id whose times overlap: two instrumentations of one run, each making its
    own trace; a response id seen again later, e.g. from a cache, is another call) are one task, named by
    the smallest of their task_ids; the top traces of the others keep depth 0 and no parent, state
    `shared_calls`. The copies count once (usage rule below).
  - stitch_state of a row: the trace buffer's state when it gave the trace up early (`early_flush`,
    `shutdown_flush`, `no_root`), else the link state above (`ok` when nothing odd).

Usage counted exactly once (`usage_counted`)
  - A span carries usage when any token column is > 0. It counts only if no inference (llm/embedding)
    descendant in the trace carries usage (a rollup on an agent/workflow/root span counts only where
    nothing below reported it).
    In a malformed parent loop every span of the loop is its own ancestor, so none of them counts.
  - Same `response_id` twice in one trace: the smallest span_id counts. Across traces the receiver
    remembers recent response ids (bounded; as 16-byte hashes) and marks later copies not counted.
  - Whole dataset (`resolve_rows`, analyzer/sql/counted_spans.sql): a trace written whole keeps the
    receiver's usage_counted; a trace written in parts (a row in an early state) is recomputed over all
    its parts; then among the spans left, one per response_id counts: the smallest (trace_id, span_id).
    So a call reported twice counts once whatever the arrival order or receiver.

Receiver specifics (the analyzer needs none of this: it sees every file of every writer)
  - The receiver knows only what it wrote, within bounded LRU indexes: link targets (spans of agent runs
    other than their trace's top one) and traces (task, chosen parent, top agent run). A forgotten span
    resolves to its trace's top agent run; a forgotten or unseen trace leaves the sub-agent
    `pending_parent` with task_id None. A cycle is recognised when it closes through traces it remembers.
  - A trace written in parts (early flushes) is attributed part by part; the analyzer joins the parts.
  - In SQL only: where a parent chain breaks because a parent was not written (`--keep genai`), the
    receiver's agent_span_id is used if that agent span is in the trace.

Keep rule: `trace` keeps every span of a trace holding at least one GenAI span (category not `other`);
`genai` only GenAI spans and agent runs; `all` everything.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from collector_ext.schema import (
    CATEGORY_AGENT,
    GENAI_CATEGORIES,
    INFERENCE_CATEGORIES,
    STITCH_CYCLE,
    STITCH_EARLY,
    STITCH_MISSING_PARENT,
    STITCH_MULTI_PARENT,
    STITCH_NO_ROOT,
    STITCH_OK,
    STITCH_PENDING,
    STITCH_SELF_LINK,
    STITCH_SHARED_CALLS,
    STITCH_SHUTDOWN,
)
from collector_ext.traces.span_refs import Link, SpanRef

GENERIC_AGENT_SPAN_NAMES = frozenset(
    {"agent.loop", "invoke_agent", "agent", "agent.run", "agent_run", "run_agent", "invoke agent", "Agent"}
)
INVOKE_AGENT_PREFIX = "invoke_agent "
KEEP_RULES = ("trace", "genai", "all")
# States of rows written before the whole trace was seen: such a trace may be written in several parts.
SPLIT_STATES = frozenset({STITCH_EARLY, STITCH_SHUTDOWN, STITCH_NO_ROOT})
# Spans that are an agent run's own work: an agent span enclosing none of them is at most a wrapper.
WORK_CATEGORIES = frozenset({"llm", "embedding", "tool", "retrieval"})
# Longest parent chain followed (spans within a trace, traces within a task): a guard, never reached by
# real data, that keeps malformed or hostile input from looping.
MAX_WALK = 10_000

# ---------------------------------------------------------------------------------------------------------
# Rules within one trace


def agent_run_name(span: SpanRef) -> str | None:
    """The name of an agent run: own agent identity, then a non-generic span name, then service.name."""
    if span.agent_name:
        return span.agent_name
    name = span.name or ""
    if name.startswith(INVOKE_AGENT_PREFIX) and name[len(INVOKE_AGENT_PREFIX) :].strip():
        return name[len(INVOKE_AGENT_PREFIX) :].strip()
    if name and name not in GENERIC_AGENT_SPAN_NAMES:
        return name
    return span.service_name


def _order_key(span: SpanRef) -> tuple[int, bytes]:
    return (span.start_time or 0, span.span_id)


@dataclass(slots=True)
class TraceShape:
    """The in-trace structure of one trace: roots, agent runs and who encloses whom."""

    by_id: dict[bytes, SpanRef]
    enclosing: dict[bytes, bytes | None]  # span_id -> nearest enclosing agent span_id (itself for agents)
    parent_agent: dict[bytes, bytes | None]  # agent span_id -> enclosing agent run above it in the trace
    top_agent: bytes | None  # the first-started agent run with no agent run above it
    roots: list[SpanRef]

    def attributed_agent(self, span_id: bytes) -> bytes | None:
        """The agent run a span of this trace is attributed to (the top agent for spans outside runs)."""
        return self.enclosing.get(span_id) or self.top_agent

    def top_level_agents(self) -> list[SpanRef]:
        agents = [self.by_id[a] for a, above in self.parent_agent.items() if above is None]
        if len(agents) > 1:
            agents.sort(key=_order_key)
        return agents


def _enclosing_agents(
    spans: list[SpanRef], by_id: dict[bytes, SpanRef], agents: set[bytes]
) -> dict[bytes, bytes | None]:
    """span_id -> nearest enclosing agent run (itself for an agent run), walking parent_span_id."""
    enclosing: dict[bytes, bytes | None] = {}
    # a walk longer than the trace has spans went round a parent loop (malformed): it stops, enclosed by none
    longest = min(len(spans), MAX_WALK)
    for span in spans:
        if span.span_id in enclosing:
            continue
        # Walk up until an agent span or a span already resolved, then fill the whole path.
        path: list[bytes] = []
        current: SpanRef | None = span
        found: bytes | None = None
        while current is not None and len(path) <= longest:
            sid = current.span_id
            if sid in enclosing:
                found = enclosing[sid]
                break
            path.append(sid)
            if sid in agents:
                found = sid
                break
            parent = current.parent_span_id
            current = by_id.get(parent) if parent else None
        for sid in path:
            enclosing[sid] = found
    return enclosing


def _agent_spans(spans: list[SpanRef], by_id: dict[bytes, SpanRef]) -> set[bytes]:
    """The agent runs before the wrapper rule: the agent spans that run no graph node, and the runs of graphs
    (the parent of a span that runs a graph node: LangGraph's graph or sub-graph, named for the agent)."""
    agents: set[bytes] = set()
    for span in spans:
        if span.graph_node is not None:
            parent = span.parent_span_id
            if parent is not None and parent in by_id:
                agents.add(parent)
        elif span.category == CATEGORY_AGENT:
            agents.add(span.span_id)
    return agents


def _wrappers(
    spans: list[SpanRef], by_id: dict[bytes, SpanRef], enclosing: dict[bytes, bytes | None], agents: set[bytes]
) -> set[bytes]:
    """Agent runs that only wrap another agent run: no inference, tool or retrieval span of their own and
    exactly one agent run directly inside (OpenInference's openai-agents "Agent workflow" around the agent)."""
    inner: dict[bytes, int] = {}
    working: set[bytes] = set()
    for span in spans:
        category = span.category
        if span.span_id in agents:
            parent = span.parent_span_id
            above = enclosing.get(parent) if parent is not None and parent in by_id else None
            if above is not None:
                inner[above] = inner.get(above, 0) + 1
        elif category in WORK_CATEGORIES:
            owner = enclosing.get(span.span_id)
            if owner is not None:
                working.add(owner)
    return {agent for agent, runs in inner.items() if runs == 1 and agent not in working}


def trace_shape(spans: list[SpanRef]) -> TraceShape:
    by_id = {s.span_id: s for s in spans}
    agents = _agent_spans(spans, by_id)
    enclosing = _enclosing_agents(spans, by_id, agents)
    if len(agents) > 1:
        wrappers = _wrappers(spans, by_id, enclosing, agents)
        if wrappers:
            agents -= wrappers
            enclosing = _enclosing_agents(spans, by_id, agents)
    parent_agent: dict[bytes, bytes | None] = {}
    for span in spans:
        if span.span_id in agents:
            parent = span.parent_span_id
            parent_agent[span.span_id] = enclosing.get(parent) if parent is not None and parent in by_id else None
    tops = [by_id[a] for a, above in parent_agent.items() if above is None]
    top_agent = min(tops, key=_order_key).span_id if tops else None
    roots = [s for s in spans if not s.parent_span_id or s.parent_span_id not in by_id]
    if len(roots) > 1:
        roots.sort(key=_order_key)
    return TraceShape(by_id, enclosing, parent_agent, top_agent, roots)


def parent_links(shape: TraceShape) -> list[Link]:
    """The trace's parent links: those on its roots, else those on its top-level agent runs (sorted)."""
    for carriers in (shape.roots, shape.top_level_agents()):
        links = {link for span in carriers for link in span.links}
        if links:
            return sorted(links)
    return []


def choose_parent(trace_id: bytes, links: list[Link], exists: Callable[[bytes], bool]) -> tuple[Link | None, str]:
    """The parent link of a trace and its link state (missing_parent when no target exists)."""
    if not links:
        return None, STITCH_OK
    others = sorted(link for link in set(links) if link[0] != trace_id)
    if not others:
        return None, STITCH_SELF_LINK
    existing = [link for link in others if exists(link[0])]
    if not existing:
        return None, STITCH_MISSING_PARENT
    state = STITCH_MULTI_PARENT if len({t for t, _ in existing}) > 1 else STITCH_OK
    return existing[0], state


def mark_usage_counted(spans: list[SpanRef], shape: TraceShape) -> None:
    """usage_counted within one trace: leaf-most usage only, one span per response_id."""
    covered: set[bytes] = set()  # spans with an inference descendant carrying usage
    for span in spans:
        if span.has_usage and span.category in INFERENCE_CATEGORIES:
            parent = span.parent_span_id
            steps = 0
            while parent is not None and parent not in covered and steps < MAX_WALK:
                above = shape.by_id.get(parent)
                if above is None:
                    break
                covered.add(parent)
                parent = above.parent_span_id
                steps += 1
    first_by_response: dict[str, bytes] = {}
    with_response = 0  # counted spans carrying a response id
    for span in spans:
        counted = span.has_usage and span.span_id not in covered
        span.usage_counted = counted
        response_id = span.response_id
        if counted and response_id:
            with_response += 1
            best = first_by_response.get(response_id)
            if best is None or span.span_id < best:
                first_by_response[response_id] = span.span_id
    if with_response == len(first_by_response):
        return  # no response id twice: nothing to un-count
    for span in spans:
        response_id = span.response_id
        if span.usage_counted and response_id and first_by_response[response_id] != span.span_id:
            span.usage_counted = False


def keep_rows(spans: list[SpanRef], keep: str) -> list[SpanRef]:
    if keep == "all":
        return spans
    if keep == "genai":  # an agent run is GenAI whatever its category (a graph's run is a chain span)
        return [s for s in spans if s.category in GENAI_CATEGORIES or s.agent_span_id == s.span_id]
    return spans if any(s.category in GENAI_CATEGORIES for s in spans) else []


# ---------------------------------------------------------------------------------------------------------
# Rules across traces (whole set of traces; the in-memory twin of analyzer/sql/tasks_resolve.sql)


@dataclass(frozen=True, slots=True)
class TraceTask:
    task_id: bytes
    parent_trace_id: bytes | None
    parent_span_id: bytes | None
    depth: int
    stitch_state: str


def resolve_tasks(parents: dict[bytes, tuple[Link | None, str]]) -> dict[bytes, TraceTask]:
    """Tasks of a complete set of traces: trace_id -> (chosen parent link or None, link state).

    Targets must already be restricted to traces in `parents` (choose_parent's `exists`). Cycles: the
    smallest trace_id of the cycle is the top, its parent cut, every member marked `cycle`.
    """
    parent_of = {t: link[0] for t, (link, _) in parents.items() if link is not None}
    in_cycle: set[bytes] = set()
    cut: set[bytes] = set()
    done: set[bytes] = set()
    for start in sorted(parent_of):
        if start in done:
            continue
        path: list[bytes] = []
        position: dict[bytes, int] = {}
        node: bytes | None = start
        while node is not None and node not in done and node not in position:
            position[node] = len(path)
            path.append(node)
            node = parent_of.get(node)
        if node is not None and node in position:  # walked back into this path: a cycle
            members = path[position[node] :]
            in_cycle.update(members)
            cut.add(min(members))
        done.update(path)
    result: dict[bytes, TraceTask] = {}

    def task_of(trace: bytes) -> TraceTask:
        chain: list[bytes] = []
        node = trace
        while node not in result and node in parent_of and node not in cut and len(chain) < MAX_WALK:
            chain.append(node)
            node = parent_of[node]
        if node not in result:
            link, state = parents[node]
            top_state = STITCH_CYCLE if node in in_cycle else state
            result[node] = TraceTask(node, None, None, 0, top_state)
        for child in reversed(chain):
            above = result[parent_of[child]]
            link, state = parents[child]
            assert link is not None  # in the chain: it has a parent link
            result[child] = TraceTask(
                above.task_id, link[0], link[1], above.depth + 1, STITCH_CYCLE if child in in_cycle else state
            )
        return result[trace]

    for trace in sorted(parents):
        task_of(trace)
    return result


def merge_shared_calls(tasks: dict[bytes, TraceTask], traces: dict[bytes, list[SpanRef]]) -> dict[bytes, TraceTask]:
    """Tasks sharing an inference call (same response_id, overlapping times) merged into the smallest task_id."""
    copies: dict[str, list[tuple[bytes, int, int]]] = {}
    for trace, spans in traces.items():
        for span in spans:
            if span.response_id and span.category in INFERENCE_CATEGORIES:
                copies.setdefault(span.response_id, []).append((trace, span.start_time, _end_time(span)))
    merged_into: dict[bytes, bytes] = {}  # union-find over task ids; the smaller id is always the root

    def find(task: bytes) -> bytes:
        while merged_into.get(task, task) != task:
            task = merged_into[task]
        return task

    for same in copies.values():
        for i, (trace_a, start_a, end_a) in enumerate(same):
            for trace_b, start_b, end_b in same[i + 1 :]:
                if trace_a != trace_b and start_a <= end_b and start_b <= end_a:
                    a, b = find(tasks[trace_a].task_id), find(tasks[trace_b].task_id)
                    if a != b:
                        merged_into[max(a, b)] = min(a, b)
    if not merged_into:
        return tasks
    result = {}
    for trace, task in tasks.items():
        top = find(task.task_id)
        if top == task.task_id:
            result[trace] = task
        elif trace == task.task_id:  # the top trace of a merged task
            result[trace] = TraceTask(top, None, None, task.depth, STITCH_SHARED_CALLS)
        else:
            result[trace] = TraceTask(top, task.parent_trace_id, task.parent_span_id, task.depth, task.stitch_state)
    return result


def _end_time(span: SpanRef) -> int:
    """A span's end (ns since the epoch), from its row: only the whole-dataset rules read it, so the held
    span ref does not carry it (a ref made by hand, without a row, ends where it starts)."""
    if span.batch is None:
        return span.start_time
    return span.batch.table.column("end_time")[span.index].value


# ---------------------------------------------------------------------------------------------------------
# The receiver's stitcher


@dataclass(frozen=True, slots=True)
class AgentRef:
    """An agent run as a link target sees it."""

    name: str | None
    span_id: bytes | None
    depth: int | None


@dataclass(slots=True)
class TraceEntry:
    task_id: bytes | None
    parent_trace_id: bytes | None  # chosen parent (None: top, or parent not seen yet)
    top_agent: AgentRef | None


class _Lru(OrderedDict):
    def __init__(self, capacity: int) -> None:
        super().__init__()
        self.capacity = max(1, capacity)

    def get_fresh(self, key):
        value = self.get(key)
        if value is not None:
            self.move_to_end(key)
        return value

    def put(self, key, value) -> None:
        if key in self:
            self.move_to_end(key)
        self[key] = value  # a new key goes last
        if len(self) > self.capacity:
            self.popitem(last=False)


@dataclass(slots=True)
class _Run:
    name: str | None
    agent_id: str | None
    span_id: bytes | None
    depth: int
    parent_name: str | None


class Stitcher:
    """Attributes, stitches and filters whole traces as the trace buffer hands them on.

    Memory is bounded by `memory_items` per index (link targets, traces, response ids), each an LRU.
    `enabled=False` only applies the keep rule (the benchmark's baseline).
    """

    def __init__(self, keep: str = "trace", memory_items: int = 1_000_000, enabled: bool = True) -> None:
        if keep not in KEEP_RULES:
            raise ValueError(f"keep must be one of {', '.join(KEEP_RULES)}, not {keep!r}")
        self.keep = keep
        self.enabled = enabled
        # (trace_id, span_id) -> AgentRef the span is attributed to; only spans of agent runs other than
        # their trace's top one (the others resolve through the trace entry's top agent run)
        self._spans = _Lru(memory_items)
        self._traces = _Lru(memory_items)  # trace_id -> TraceEntry
        self._responses = _Lru(memory_items)  # response_key(response_id) -> (trace_id, span_id) counted

    def finish_trace(self, spans: list[SpanRef], state: str | None) -> list[SpanRef]:
        """Fill the stitching columns of every span of one trace (or one early part of it); returns the
        spans to write (the keep rule)."""
        if not spans:
            return []
        if not self.enabled:
            return keep_rows(spans, self.keep)
        trace_id = spans[0].trace_id
        shape = trace_shape(spans)
        links = parent_links(shape)
        link, link_state = choose_parent(trace_id, links, self._traces.__contains__)
        task_id, parent_trace_id, link_state = self._task_of(trace_id, link, link_state)
        if link_state == STITCH_PENDING and parent_trace_id is None:
            # Remember where the trace points, so a cycle closing through it later is recognised.
            parent_trace_id = next((t for t, _ in links if t != trace_id), None)
        parent_run = self._parent_run(link)
        runs = self._agent_runs(shape, parent_run)
        row_state = state or link_state
        # the attribution each agent run gives its spans, made once per run
        given = {
            agent: (run.name, run.agent_id, run.span_id, run.depth, run.parent_name) for agent, run in runs.items()
        }
        fallback = given.get(shape.top_agent) if shape.top_agent is not None else None
        enclosing = shape.enclosing
        for span in spans:
            agent = enclosing.get(span.span_id)
            columns = (given.get(agent) if agent is not None else None) or fallback
            if columns is None:  # no agent run in the trace: the span keeps its own identity
                span.agent_name = span.agent_name or span.service_name
                span.agent_span_id = span.agent_depth = span.parent_agent_name = None
            else:
                span.agent_name, span.agent_id, span.agent_span_id, span.agent_depth, span.parent_agent_name = columns
            span.task_id = task_id
            span.stitch_state = row_state
        mark_usage_counted(spans, shape)
        kept = keep_rows(spans, self.keep)
        self._remember(trace_id, shape, runs, kept, task_id, parent_trace_id)
        return kept

    def _task_of(self, trace_id: bytes, link: Link | None, link_state: str) -> tuple[bytes | None, bytes | None, str]:
        """(task_id, chosen parent trace, state) from what this receiver has seen."""
        if link is None:
            if link_state == STITCH_MISSING_PARENT:
                return None, None, STITCH_PENDING
            return trace_id, None, link_state
        path = [trace_id]
        node: bytes | None = link[0]
        while node is not None and len(path) < MAX_WALK:
            if node == trace_id:  # the chain came back: a cycle, its smallest trace is the top
                top = min(path)
                return top, (None if top == trace_id else link[0]), STITCH_CYCLE
            entry = self._traces.get_fresh(node)
            if entry is None:
                return None, link[0], STITCH_PENDING
            if entry.task_id is not None:
                return entry.task_id, link[0], link_state
            path.append(node)
            node = entry.parent_trace_id
        return None, link[0], STITCH_PENDING

    def _parent_run(self, link: Link | None) -> AgentRef | None:
        if link is None:
            return None
        ref = self._spans.get_fresh(link)
        if ref is not None and ref.span_id is not None:
            return ref
        # Not written, or written before its agent run arrived (an early part): the trace's top agent run.
        entry = self._traces.get(link[0])
        return entry.top_agent if entry is not None else None

    def _agent_runs(self, shape: TraceShape, parent_run: AgentRef | None) -> dict[bytes, _Run]:
        runs: dict[bytes, _Run] = {}
        linked_depth = parent_run.depth + 1 if parent_run is not None and parent_run.depth is not None else 0
        linked_name = parent_run.name if parent_run is not None else None

        def run_of(span_id: bytes) -> _Run:
            # Agents nest shallowly; resolve the agent chain above first (bounded by MAX_WALK).
            chain: list[bytes] = []
            node: bytes | None = span_id
            while node is not None and node not in runs and len(chain) < MAX_WALK:
                chain.append(node)
                node = shape.parent_agent.get(node)
            for agent in reversed(chain):
                above = shape.parent_agent.get(agent)
                span = shape.by_id[agent]
                if above is not None and above in runs:
                    depth, parent_name = runs[above].depth + 1, runs[above].name
                else:
                    depth, parent_name = linked_depth, linked_name
                runs[agent] = _Run(agent_run_name(span), span.agent_id, agent, depth, parent_name)
            return runs[span_id]

        for agent in shape.parent_agent:
            run_of(agent)
        return runs

    def _remember(
        self,
        trace_id: bytes,
        shape: TraceShape,
        runs: dict[bytes, _Run],
        kept: list[SpanRef],
        task_id: bytes | None,
        parent_trace_id: bytes | None,
    ) -> None:
        if not kept:
            return
        top = runs.get(shape.top_agent) if shape.top_agent is not None else None
        top_ref = AgentRef(top.name, top.span_id, top.depth) if top else None
        previous = self._traces.get(trace_id)
        if previous is not None and top_ref is None:  # a later part of an early-flushed trace
            top_ref = previous.top_agent
        self._traces.put(trace_id, TraceEntry(task_id, parent_trace_id, top_ref))
        refs: dict[bytes | None, AgentRef | None] = {}
        top_span_id = top_ref.span_id if top_ref is not None else None
        responses = self._responses
        for span in kept:
            agent = span.agent_span_id
            # Spans of the top agent run need no entry: a link to them falls back to the trace's top run.
            if agent is not None and agent != top_span_id:
                if agent not in refs:
                    refs[agent] = AgentRef(span.agent_name, agent, span.agent_depth)
                self._spans.put((trace_id, span.span_id), refs[agent])
            response_id = span.response_id
            if span.usage_counted and response_id:
                # the LRU's get_fresh/put, inlined: this runs for every LLM call
                key = (trace_id, span.span_id)
                digest = response_key(response_id)
                first = responses.get(digest)
                if first is None:
                    responses[digest] = key
                    if len(responses) > responses.capacity:
                        responses.popitem(last=False)
                elif first != key:
                    span.usage_counted = False
                else:
                    responses.move_to_end(digest)


def response_key(response_id: str) -> bytes:
    """A fixed-size key for a response id in the stitcher's memory: a client may send ids of megabytes, and
    the memory keeps up to `memory_items` of them. 128 bits: no collision in any realistic number of calls."""
    return hashlib.blake2b(response_id.encode("utf-8", "surrogatepass"), digest_size=16).digest()


def stitch_traces(traces: Iterable[list[SpanRef]], keep: str = "trace", memory_items: int = 1_000_000) -> list[SpanRef]:
    """Run whole traces through one Stitcher in arrival order; returns every span it would write."""
    stitcher = Stitcher(keep=keep, memory_items=memory_items)
    rows: list[SpanRef] = []
    for spans in traces:
        rows.extend(stitcher.finish_trace(spans, None))
    return rows


@dataclass(frozen=True, slots=True)
class AgentRun:
    trace_id: bytes
    span_id: bytes
    task_id: bytes
    agent_name: str | None
    parent_agent: tuple[bytes, bytes] | None  # (trace_id, span_id) of the parent agent run
    parent_agent_name: str | None
    depth: int


@dataclass(frozen=True, slots=True)
class Resolution:
    tasks: dict[bytes, TraceTask]
    runs: dict[tuple[bytes, bytes], AgentRun]
    counted: set[tuple[bytes, bytes]]  # (trace_id, span_id) of the spans whose usage counts


def resolve_rows(rows: Iterable[SpanRef]) -> Resolution:
    """The whole-dataset answer of the rules, in memory (the analyzer's SQL computes the same), over written
    spans (their stitching columns filled).

    Spans of one trace may come in several parts (early flushes); they are joined by trace_id. Spans are
    copied, never changed.
    """
    traces: dict[bytes, list[SpanRef]] = {}
    for row in rows:
        traces.setdefault(row.trace_id, []).append(row.copy())
    shapes = {t: trace_shape(spans) for t, spans in traces.items()}
    parents = {t: choose_parent(t, parent_links(shape), traces.__contains__) for t, shape in shapes.items()}
    tasks = merge_shared_calls(resolve_tasks(parents), traces)
    parent_of_run: dict[tuple[bytes, bytes], tuple[bytes, bytes] | None] = {}
    for trace, shape in shapes.items():
        task = tasks[trace]
        linked: tuple[bytes, bytes] | None = None
        if task.parent_trace_id is not None:
            parent_shape = shapes[task.parent_trace_id]
            if task.parent_span_id in parent_shape.by_id:
                agent = parent_shape.attributed_agent(task.parent_span_id)
            else:
                agent = parent_shape.top_agent
            linked = (task.parent_trace_id, agent) if agent is not None else None
        for run, above in shape.parent_agent.items():
            parent_of_run[(trace, run)] = (trace, above) if above is not None else linked
    runs: dict[tuple[bytes, bytes], AgentRun] = {}

    def run_of(key: tuple[bytes, bytes]) -> AgentRun:
        chain: list[tuple[bytes, bytes]] = []
        node: tuple[bytes, bytes] | None = key
        while node is not None and node not in runs and len(chain) < MAX_WALK:
            chain.append(node)
            node = parent_of_run[node]
        for trace, span_id in reversed(chain):
            parent = parent_of_run[(trace, span_id)]
            above = runs.get(parent) if parent is not None else None
            runs[(trace, span_id)] = AgentRun(
                trace,
                span_id,
                tasks[trace].task_id,
                agent_run_name(shapes[trace].by_id[span_id]),
                parent if above is not None else None,
                above.agent_name if above is not None else None,
                above.depth + 1 if above is not None else 0,
            )
        return runs[key]

    for key in sorted(parent_of_run):
        run_of(key)
    counted: set[tuple[bytes, bytes]] = set()
    first_by_response: dict[str, tuple[bytes, bytes]] = {}
    for trace, spans in traces.items():
        if any(span.stitch_state in SPLIT_STATES for span in spans):
            mark_usage_counted(spans, shapes[trace])  # written in parts: the receiver never saw it whole
        for span in spans:
            if not span.usage_counted:
                continue
            key = (trace, span.span_id)
            response_id = span.response_id
            if response_id:
                best = first_by_response.get(response_id)
                if best is None or key < best:
                    first_by_response[response_id] = key
            else:
                counted.add(key)
    counted.update(first_by_response.values())
    return Resolution(tasks, runs, counted)
