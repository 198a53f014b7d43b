"""Stitching scenarios shared by the stitching tests: span rows of whole traces plus the answers expected.

Every answer below is worked out by hand from the rules in `collector_ext/traces/stitching.py`'s docstring:
task of every trace (task, depth, state as the analyzer resolves it), parent agent and depth of every
agent run, and the tokens counted once per task.

Scenario spans are decoded rows (dicts keyed by the SPANS columns, as the decoder makes them); the receiver
stitches span refs, so `refs()` turns a request's rows into its Arrow table and span refs exactly as the
pipeline does, and `rows_of()` gives back the rows the writer would write (stitching columns filled).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from collector_ext.schema import SPANS
from collector_ext.storage.dataset_files import DatasetFiles
from collector_ext.traces.span_refs import SpanRef, assemble, span_refs
from collector_ext.traces.stitching import stitch_traces

BASE_NS = 1_795_000_000_000_000_000  # 2026-11-18


def tid(n: int) -> bytes:
    return n.to_bytes(16, "big")


def sid(trace: int, k: int) -> bytes:
    return (trace * 1000 + k).to_bytes(8, "big")


def span(
    trace: int,
    k: int,
    parent: int | None = None,
    *,
    name: str = "work",
    category: str = "other",
    agent_name: str | None = None,
    links: list[tuple[int, int]] = (),
    input_tokens: int | None = None,
    output_tokens: int | None = None,
    response_id: str | None = None,
    start: int = 0,
    service: str = "svc",
    graph_node: str | None = None,
) -> dict:
    """One span row keyed by schema.SPANS names; `links` are (trace, k) pairs; start in ms from BASE."""
    row = {f.name: None for f in SPANS}
    row.update(
        trace_id=tid(trace),
        span_id=sid(trace, k),
        parent_span_id=sid(trace, parent) if parent is not None else None,
        name=name,
        span_kind="internal",
        start_time=BASE_NS + (trace * 10_000 + start) * 1_000_000,
        end_time=BASE_NS + (trace * 10_000 + start + 500) * 1_000_000,
        status_code="unset",
        service_name=service,
        category=category,
        agent_name=agent_name,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        response_id=response_id,
        graph_node=graph_node,
        links=[{"trace_id": tid(t), "span_id": sid(t, s), "attributes": {}} for t, s in links],
        attributes={},
        resource_attributes={},
        received_time=BASE_NS,
    )
    return row


def agent(trace: int, k: int, parent: int | None = None, *, name: str, **kw) -> dict:
    """An `agent.loop` span with its own agent identity `name`."""
    return span(trace, k, parent, name="agent.loop", category="agent", agent_name=name, **kw)


def llm(trace: int, k: int, parent: int, tokens: tuple[int, int], **kw) -> dict:
    return span(
        trace, k, parent, name="gen_ai.chat", category="llm", input_tokens=tokens[0], output_tokens=tokens[1], **kw
    )


def tool(trace: int, k: int, parent: int, **kw) -> dict:
    return span(trace, k, parent, name="mcp.tool.call", category="tool", **kw)


def graph(trace: int, k: int, parent: int | None = None, *, name: str, **kw) -> dict:
    """The run of a LangGraph graph as OpenInference's LangChain tracer emits it: a chain span named for the
    graph (the agent's name), carrying no agent marker of its own."""
    return span(trace, k, parent, name=name, **kw)


def node(trace: int, k: int, parent: int, *, name: str, category: str = "other", **kw) -> dict:
    """A span that runs graph node `name` (decoded `graph_node`); OpenInference marks a node whose name holds
    "agent" (a prebuilt ReAct agent's step) AGENT: category "agent"."""
    return span(trace, k, parent, name=name, category=category, graph_node=name, **kw)


@dataclass
class Scenario:
    name: str
    traces: list[list[dict]]  # whole traces, in arrival order (parents first)
    tasks: dict[int, tuple[int, int, str]]  # trace -> (task trace, trace depth, analyzer state)
    runs: dict[tuple[int, int], tuple[str, str | None, int]]  # agent span -> (agent, parent agent, depth)
    tokens: dict[int, tuple[int, int]]  # task trace -> counted (input, output)
    receiver_pending: set[int] = field(default_factory=set)  # traces the receiver cannot resolve parents-first
    # traces the receiver writes as tasks of their own, which the analyzer merges (shared calls)
    merged_by_analyzer: set[int] = field(default_factory=set)

    def rows(self) -> list[dict]:
        return [row for trace in self.traces for row in trace]


def chain_of_three() -> Scenario:
    # orchestrator (trace 1) -> researcher (trace 2) -> writer (trace 3), each delegating from a span
    t1 = [
        agent(1, 1, name="orchestrator", input_tokens=999, output_tokens=99),  # rollup: has LLM below
        span(1, 2, 1, name="delegate"),
        llm(1, 3, 1, (100, 10)),
    ]
    t2 = [
        agent(2, 1, name="researcher", links=[(1, 2)]),
        span(2, 2, 1, name="delegate"),
        llm(2, 3, 1, (200, 20)),
        tool(2, 4, 1),
    ]
    t3 = [agent(3, 1, name="writer", links=[(2, 2)]), llm(3, 2, 1, (300, 30))]
    return Scenario(
        "chain_of_three",
        [t1, t2, t3],
        tasks={1: (1, 0, "ok"), 2: (1, 1, "ok"), 3: (1, 2, "ok")},
        runs={
            (1, 1): ("orchestrator", None, 0),
            (2, 1): ("researcher", "orchestrator", 1),
            (3, 1): ("writer", "researcher", 2),
        },
        tokens={1: (600, 60)},
    )


def fan_out_five() -> Scenario:
    t10 = [agent(10, 1, name="lead")] + [span(10, 1 + i, 1, name="delegate") for i in range(1, 6)]
    subs = [[agent(10 + i, 1, name=f"worker{i}", links=[(10, 1 + i)]), llm(10 + i, 2, 1, (i, 1))] for i in range(1, 6)]
    return Scenario(
        "fan_out_five",
        [t10, *subs],
        tasks={10: (10, 0, "ok"), **{10 + i: (10, 1, "ok") for i in range(1, 6)}},
        runs={(10, 1): ("lead", None, 0), **{(10 + i, 1): (f"worker{i}", "lead", 1) for i in range(1, 6)}},
        tokens={10: (15, 5)},
    )


def nested_in_trace() -> Scenario:
    # root workflow span (no agent) > agent "boss" > agent "planner" (an invoke_agent span named for it)
    t20 = [
        span(20, 1, name="workflow"),
        agent(20, 2, 1, name="boss", start=1),
        span(20, 3, 2, name="invoke_agent planner", category="agent", start=2),
        llm(20, 4, 3, (40, 4)),
        llm(20, 5, 2, (50, 5)),
        llm(20, 6, 1, (60, 6)),  # outside every agent run: attributed to the top agent run (boss)
    ]
    return Scenario(
        "nested_in_trace",
        [t20],
        tasks={20: (20, 0, "ok")},
        runs={(20, 2): ("boss", None, 0), (20, 3): ("planner", "boss", 1)},
        tokens={20: (150, 15)},
    )


def fan_in() -> Scenario:
    # trace 32 links to delegates in two parents; the smallest (trace, span) that exists wins: trace 30
    t30 = [agent(30, 1, name="alpha"), span(30, 2, 1, name="delegate")]
    t31 = [agent(31, 1, name="beta"), span(31, 2, 1, name="delegate")]
    t32 = [agent(32, 1, name="merger", links=[(31, 2), (30, 2)]), llm(32, 2, 1, (7, 3))]
    return Scenario(
        "fan_in",
        [t30, t31, t32],
        tasks={30: (30, 0, "ok"), 31: (31, 0, "ok"), 32: (30, 1, "multi_parent")},
        runs={(30, 1): ("alpha", None, 0), (31, 1): ("beta", None, 0), (32, 1): ("merger", "alpha", 1)},
        tokens={30: (7, 3), 31: (0, 0)},
    )


def cycle() -> Scenario:
    # 41 -> 40 -> 41 (a cycle) and 42 hanging off 41; the smallest trace of the cycle (40) is the top
    t40 = [agent(40, 1, name="ping", links=[(41, 2)]), span(40, 2, 1, name="delegate"), llm(40, 3, 1, (1, 1))]
    t41 = [agent(41, 1, name="pong", links=[(40, 2)]), span(41, 2, 1, name="delegate"), llm(41, 3, 1, (2, 2))]
    t42 = [agent(42, 1, name="tail", links=[(41, 2)]), llm(42, 2, 1, (4, 4))]
    return Scenario(
        "cycle",
        [t40, t41, t42],
        tasks={40: (40, 0, "cycle"), 41: (40, 1, "cycle"), 42: (40, 2, "ok")},
        runs={(40, 1): ("ping", None, 0), (41, 1): ("pong", "ping", 1), (42, 1): ("tail", "pong", 2)},
        tokens={40: (7, 7)},
        receiver_pending={40},
    )


def self_link() -> Scenario:
    t50 = [agent(50, 1, name="narcissus", links=[(50, 2)]), span(50, 2, 1), llm(50, 3, 1, (5, 5))]
    return Scenario(
        "self_link",
        [t50],
        tasks={50: (50, 0, "self_link")},
        runs={(50, 1): ("narcissus", None, 0)},
        tokens={50: (5, 5)},
    )


def missing_parent() -> Scenario:
    t60 = [agent(60, 1, name="orphan", links=[(69, 1)]), llm(60, 2, 1, (6, 6))]
    return Scenario(
        "missing_parent",
        [t60],
        tasks={60: (60, 0, "missing_parent")},
        runs={(60, 1): ("orphan", None, 0)},
        tokens={60: (6, 6)},
        receiver_pending={60},
    )


def duplicate_response() -> Scenario:
    # an instrumentation and the SDK's own tracing report one call twice, in two traces (same response id)
    t70 = [agent(70, 1, name="caller"), llm(70, 2, 1, (11, 1), response_id="resp-1")]
    # (at the same moment: start is in ms from trace 71's own base time, 10 s after trace 70's)
    t71 = [
        span(
            71,
            1,
            name="sdk.messages.create",
            category="llm",
            input_tokens=11,
            output_tokens=1,
            response_id="resp-1",
            start=-10_000,
        )
    ]
    return Scenario(
        "duplicate_response",
        [t70, t71],
        # two instrumentations of one run: one task (the smallest task id), the call counted once
        tasks={70: (70, 0, "ok"), 71: (70, 0, "shared_calls")},
        runs={(70, 1): ("caller", None, 0)},
        tokens={70: (11, 1)},
        merged_by_analyzer={71},
    )


def reverse_order() -> Scenario:
    # one trace whose spans arrive children first (the order spans end), many requests of one span each
    spans = [agent(80, 1, name="slow")] + [llm(80, k, 1, (k, 1)) for k in range(2, 12)]
    return Scenario(
        "reverse_order",
        [list(reversed(spans))],
        tasks={80: (80, 0, "ok")},
        runs={(80, 1): ("slow", None, 0)},
        tokens={80: (sum(range(2, 12)), 10)},
    )


def langgraph_agent_as_tool() -> Scenario:
    # LangGraph prebuilt ReAct agents: the orchestrator graph's `research` tool invokes the researcher graph; every
    # ReAct step is an `agent` node marked AGENT (one run per graph, not per step)
    t90 = [
        graph(90, 1, name="orchestrator"),
        node(90, 2, 1, name="agent", category="agent", start=1),
        llm(90, 3, 2, (100, 10), start=1),
        node(90, 4, 1, name="tools", start=2),
        span(90, 5, 4, name="research", category="tool", start=2),
        graph(90, 6, 5, name="researcher", start=2),
        node(90, 7, 6, name="agent", category="agent", start=2),
        llm(90, 8, 7, (20, 2), start=2),
        node(90, 9, 6, name="tools", start=3),
        span(90, 10, 9, name="search", category="tool", start=3),
        node(90, 11, 6, name="agent", category="agent", start=4),
        llm(90, 12, 11, (30, 3), start=4),
        node(90, 13, 1, name="agent", category="agent", start=5),
        llm(90, 14, 13, (40, 4), start=5),
    ]
    return Scenario(
        "langgraph_agent_as_tool",
        [t90],
        tasks={90: (90, 0, "ok")},
        runs={(90, 1): ("orchestrator", None, 0), (90, 6): ("researcher", "orchestrator", 1)},
        tokens={90: (190, 19)},
    )


def langgraph_queued() -> Scenario:
    # the researcher graph runs as a job: a new trace whose root links to the orchestrator's tool span
    t91 = [
        graph(91, 1, name="orchestrator"),
        node(91, 2, 1, name="agent", category="agent"),
        llm(91, 3, 2, (5, 1)),
        node(91, 4, 1, name="tools", start=1),
        span(91, 5, 4, name="research", category="tool", start=1),
    ]
    t92 = [
        span(92, 1, name="researcher-job", links=[(91, 5)]),
        graph(92, 2, 1, name="researcher"),
        node(92, 3, 2, name="agent", category="agent"),
        llm(92, 4, 3, (7, 2)),
    ]
    return Scenario(
        "langgraph_queued",
        [t91, t92],
        tasks={91: (91, 0, "ok"), 92: (91, 1, "ok")},
        runs={(91, 1): ("orchestrator", None, 0), (92, 2): ("researcher", "orchestrator", 1)},
        tokens={91: (12, 3)},
    )


def langgraph_sub_graph_nodes() -> Scenario:
    # trace 95: a graph `team` with a plain node and a sub-graph used as a node (`writer`: a run of its own);
    # trace 97: a graph `app` whose only node is the sub-graph `assistant`: a wrapper, not a run
    t95 = [
        graph(95, 1, name="team"),
        node(95, 2, 1, name="planner"),
        llm(95, 3, 2, (3, 1)),
        node(95, 4, 1, name="writer", start=1),
        node(95, 5, 4, name="agent", category="agent", start=1),
        llm(95, 6, 5, (4, 1), start=1),
    ]
    t97 = [
        graph(97, 1, name="app"),
        node(97, 2, 1, name="assistant"),
        node(97, 3, 2, name="agent", category="agent"),
        llm(97, 4, 3, (9, 1)),
        node(97, 5, 2, name="tools", start=1),
        span(97, 6, 5, name="lookup", category="tool", start=1),
        node(97, 7, 2, name="agent", category="agent", start=2),
        llm(97, 8, 7, (8, 1), start=2),
    ]
    return Scenario(
        "langgraph_sub_graph_nodes",
        [t95, t97],
        tasks={95: (95, 0, "ok"), 97: (97, 0, "ok")},
        runs={(95, 1): ("team", None, 0), (95, 4): ("writer", "team", 1), (97, 2): ("assistant", None, 0)},
        tokens={95: (7, 2), 97: (17, 2)},
    )


def _linked(trace: int, name: str, parent_trace: int | None, tokens: int = 1) -> list[dict]:
    """A trace of one agent run (linked to `parent_trace`'s delegate span), a delegate span and an LLM call."""
    links = [(parent_trace, 2)] if parent_trace is not None else []
    return [agent(trace, 1, name=name, links=links), span(trace, 2, 1, name="delegate"), llm(trace, 3, 1, (tokens, 1))]


def deep_chain(length: int = 10_000) -> Scenario:
    # issue 16: each trace a sub-agent of the previous one; trace ids fall along the chain (the top is the
    # largest), so a walk from the smallest id goes the whole way up
    top = 30_000
    traces = [_linked(top - i, f"level{i}", top - i + 1 if i else None) for i in range(length)]
    return Scenario(
        "deep_chain",
        traces,
        tasks={top - i: (top, i, "ok") for i in range(length)},
        runs={(top - i, 1): (f"level{i}", f"level{i - 1}" if i else None, i) for i in range(length)},
        tokens={top: (length, length)},
    )


def long_cycle(length: int = 2_000) -> Scenario:
    # issue 16: a ring of `length` traces, each linked to the next, and one trace hanging off the ring; the
    # smallest trace (40000) is the top, its link cut, so the ring hangs below it in reverse order
    first = 40_000
    ring = [_linked(first + i, f"r{i}", first + (i + 1) % length) for i in range(length)]
    ring = [ring[0], *reversed(ring[1:])]  # parents first: the top, then down the ring
    tail = _linked(first + length, "tail", first + length // 2)
    depth = {first: 0, **{first + i: length - i for i in range(1, length)}}
    return Scenario(
        "long_cycle",
        [*ring, tail],
        tasks={
            **{t: (first, d, "cycle") for t, d in depth.items()},
            first + length: (first, depth[first + length // 2] + 1, "ok"),
        },
        runs={
            **{
                (t, 1): (f"r{t - first}", None if d == 0 else f"r{(t - first + 1) % length}", d)
                for t, d in depth.items()
            },
            (first + length, 1): ("tail", f"r{length // 2}", depth[first + length // 2] + 1),
        },
        tokens={first: (length + 1, length + 1)},
        # written pending until the last member (40001) closes the ring; the tail finds the task through it
        receiver_pending={first + i for i in range(length) if i != 1},
    )


def deep_and_wide(depth: int = 2_000, width: int = 3_000) -> Scenario:
    # issue 16: a chain 2,000 deep, each level also spawning a leaf sub-agent, and a lead fanning out wide
    chain = [_linked(60_000 + i, f"c{i}", 60_000 + i - 1 if i else None) for i in range(depth)]
    leaves = [_linked(70_000 + i, f"leaf{i}", 60_000 + i) for i in range(depth)]
    lead = _linked(80_000, "lead", None)
    fan = [_linked(80_001 + i, f"w{i}", 80_000) for i in range(width)]
    return Scenario(
        "deep_and_wide",
        [*chain, *leaves, lead, *fan],
        tasks={
            **{60_000 + i: (60_000, i, "ok") for i in range(depth)},
            **{70_000 + i: (60_000, i + 1, "ok") for i in range(depth)},
            80_000: (80_000, 0, "ok"),
            **{80_001 + i: (80_000, 1, "ok") for i in range(width)},
        },
        runs={
            **{(60_000 + i, 1): (f"c{i}", f"c{i - 1}" if i else None, i) for i in range(depth)},
            **{(70_000 + i, 1): (f"leaf{i}", f"c{i}", i + 1) for i in range(depth)},
            (80_000, 1): ("lead", None, 0),
            **{(80_001 + i, 1): (f"w{i}", "lead", 1) for i in range(width)},
        },
        tokens={60_000: (2 * depth, 2 * depth), 80_000: (width + 1, width + 1)},
    )


def all_scenarios() -> list[Scenario]:
    return [
        chain_of_three(),
        fan_out_five(),
        nested_in_trace(),
        fan_in(),
        cycle(),
        self_link(),
        missing_parent(),
        duplicate_response(),
        reverse_order(),
        langgraph_agent_as_tool(),
        langgraph_queued(),
        langgraph_sub_graph_nodes(),
    ]


def deep_scenarios() -> list[Scenario]:
    """Issue 16's hostile link graphs: thousands of traces deep or wide (too deep to print as a tree)."""
    return [deep_chain(), long_cycle(), deep_and_wide()]


def refs(rows: list[dict]) -> list[SpanRef]:
    """The span refs of `rows` (as one request: one Arrow table), as the pipeline makes them."""
    return span_refs(pa.Table.from_pylist([{f.name: r.get(f.name) for f in SPANS} for r in rows], schema=SPANS))


def stitch(traces: Iterable[list[dict]], keep: str = "trace", memory_items: int = 1_000_000) -> list[SpanRef]:
    """Whole traces (each its own request) through one Stitcher in arrival order: the spans it keeps."""
    return stitch_traces([refs(trace) for trace in traces], keep=keep, memory_items=memory_items)


def rows_of(spans: list[SpanRef]) -> list[dict]:
    """The rows the writer writes for `spans` (every column; stitching columns from the refs), in order
    within each request."""
    return assemble(spans).table.to_pylist()


def stitched_rows(traces: Iterable[list[dict]], keep: str = "trace") -> list[dict]:
    """`stitch`, as written rows."""
    return rows_of(stitch(traces, keep=keep))


def write_rows(rows: list[dict] | list[SpanRef], root: Path, writer_id: str = "w1") -> None:
    """Write span rows, or stitched span refs (as the pipeline assembles them), as Parquet of `writer_id`."""
    if rows and isinstance(rows[0], SpanRef):
        table = assemble(rows).table
    else:
        table = pa.Table.from_pylist([{f.name: r.get(f.name) for f in SPANS} for r in rows], schema=SPANS)
    DatasetFiles(root, writer_id).write("spans", table)
