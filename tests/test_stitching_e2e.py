"""Stitching end to end: the real OTel SDK -> OTLP/gRPC -> a real receiver (collector-ext serve) -> Parquet
-> the analyzer's task resolution.

Spans are made with the real SDK (TracerProvider, span links, `Span.add_link`) into an in-memory exporter,
then sent with the real OTLP gRPC exporter in the order and grouping each scenario needs (one request per
span, children first; a sub-agent before its parent; to two receivers).
"""

from __future__ import annotations

import time
from pathlib import Path

import duckdb
import pytest
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from receiver_process import ReceiverProcess

from analyzer.analysis import Analysis
from analyzer.dataset import open_dataset
from analyzer.task_queries import TaskQuery, list_tasks, task_tree

pytestmark = pytest.mark.slow


class Workload:
    """Agent runs made with the real SDK; finished spans collect in memory until sent."""

    def __init__(self) -> None:
        self.memory = InMemorySpanExporter()
        self.provider = TracerProvider(resource=Resource.create({"service.name": "agents"}))
        self.provider.add_span_processor(SimpleSpanProcessor(self.memory))
        self.tracer = self.provider.get_tracer("agentmeter.e2e")

    def agent(self, name: str, links=(), calls=(), delegates: int = 0, nested: dict | None = None):
        """A new trace: an invoke_agent root (linked to `links`) with LLM calls and delegate spans.
        Returns (trace id, [delegate span contexts])."""
        with self.tracer.start_as_current_span(
            f"invoke_agent {name}",
            context=otel_context.Context(),  # a fresh root: a separate trace
            attributes={"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": name},
            links=[trace.Link(ctx) for ctx in links],
        ) as root:
            self._calls(calls)
            contexts = []
            for _ in range(delegates):
                with self.tracer.start_as_current_span("delegate") as delegate:
                    contexts.append(delegate.get_span_context())
            if nested:
                with self.tracer.start_as_current_span("agent.loop", attributes={"gen_ai.agent.name": nested["name"]}):
                    self._calls(nested["calls"])
        return root.get_span_context().trace_id, contexts

    def _calls(self, calls) -> None:
        for input_tokens, output_tokens in calls:
            with self.tracer.start_as_current_span(
                "chat m1",
                kind=trace.SpanKind.CLIENT,
                attributes={
                    "gen_ai.operation.name": "chat",
                    "gen_ai.provider.name": "openai",
                    "gen_ai.request.model": "m1",
                    "gen_ai.usage.input_tokens": input_tokens,
                    "gen_ai.usage.output_tokens": output_tokens,
                },
            ):
                pass

    def take(self, trace_id: int | None = None) -> list[ReadableSpan]:
        """The finished spans (of one trace), in the order they ended; removed from memory."""
        spans = list(self.memory.get_finished_spans())
        taken = [s for s in spans if trace_id is None or s.context.trace_id == trace_id]
        self.memory.clear()
        for span in spans:
            if span not in taken:
                self.memory.export([span])
        return taken


def send(receiver: ReceiverProcess, spans: list[ReadableSpan], per_request: int = 512, wait: bool = True) -> None:
    """Export with the real OTLP gRPC exporter; with `wait`, until the receiver has written them all."""
    exporter = OTLPSpanExporter(endpoint=receiver.grpc_endpoint, insecure=True, timeout=10)
    try:
        for i in range(0, len(spans), per_request):
            assert exporter.export(spans[i : i + per_request]) is SpanExportResult.SUCCESS
    finally:
        exporter.shutdown()
    if wait:
        wait_written(receiver.data_dir, sorted({s.context.trace_id for s in spans}), len(spans))


def wait_written(data_dir: Path, trace_ids: list[int], spans: int, timeout: float = 20.0) -> None:
    """Wait (bounded) until the receiver has written `spans` rows of these traces to Parquet."""
    deadline = time.monotonic() + timeout
    pattern = str(data_dir / "spans" / "date=*" / "*.parquet")
    wanted = [tid(t) for t in trace_ids]
    written = 0
    while time.monotonic() < deadline:
        if list((data_dir / "spans").glob("date=*/*.parquet")):
            written = (
                duckdb.connect()
                .execute("SELECT count(*) FROM read_parquet(?) WHERE list_contains(?, trace_id)", [pattern, wanted])
                .fetchone()[0]
            )
            if written >= spans:
                return
        time.sleep(0.1)
    raise AssertionError(f"only {written} of {spans} spans written within {timeout} s")


def tid(trace_id: int) -> bytes:
    return trace_id.to_bytes(16, "big")


def analyzed(data_dir: Path) -> tuple[Analysis, dict[bytes, dict]]:
    analysis = Analysis(open_dataset(data_dir))
    tasks = {bytes.fromhex(row["task_id"]): row for row in list_tasks(analysis, TaskQuery())}
    return analysis, tasks


def trace_task(analysis: Analysis, trace_id: int) -> tuple[bytes, int, str]:
    return analysis.con.execute(
        "SELECT task_id, depth, stitch_state FROM trace_tasks WHERE trace_id = ?", [tid(trace_id)]
    ).fetchone()


def test_scenarios_through_a_real_receiver(data_dir: Path) -> None:
    work = Workload()
    orch, (d1,) = work.agent("orchestrator", calls=[(100, 10)], delegates=1)
    researcher, (d2,) = work.agent("researcher", links=[d1], calls=[(200, 20)], delegates=1)
    writer, _ = work.agent("writer", links=[d2], calls=[(300, 30)])
    lead, delegates = work.agent("lead", delegates=5)
    workers = [work.agent(f"worker{i}", links=[d], calls=[(i, 1)])[0] for i, d in enumerate(delegates, 1)]
    boss, _ = work.agent("boss", calls=[(50, 5)], nested={"name": "planner", "calls": [(40, 4)]})
    alpha, (da,) = work.agent("alpha", delegates=1)
    beta, (db,) = work.agent("beta", delegates=1)
    merger, _ = work.agent("merger", links=[db, da], calls=[(7, 3)])
    # a cycle: each root links to the other's delegate span (links added after start, before end)
    ping = work.tracer.start_span("invoke_agent ping", context=otel_context.Context(),
                                  attributes={"gen_ai.operation.name": "invoke_agent"})  # fmt: skip
    pong = work.tracer.start_span("invoke_agent pong", context=otel_context.Context(),
                                  attributes={"gen_ai.operation.name": "invoke_agent"})  # fmt: skip
    ping_delegate = work.tracer.start_span("delegate", context=trace.set_span_in_context(ping))
    pong_delegate = work.tracer.start_span("delegate", context=trace.set_span_in_context(pong))
    ping.add_link(pong_delegate.get_span_context())
    pong.add_link(ping_delegate.get_span_context())
    for span in (ping_delegate, pong_delegate, ping, pong):
        span.end()
    ping_id, pong_id = ping.get_span_context().trace_id, pong.get_span_context().trace_id
    # a self-link and a link to a trace never sent
    narcissus = work.tracer.start_span("invoke_agent narcissus", context=otel_context.Context(),
                                       attributes={"gen_ai.operation.name": "invoke_agent"})  # fmt: skip
    mirror = work.tracer.start_span("delegate", context=trace.set_span_in_context(narcissus))
    narcissus.add_link(mirror.get_span_context())
    mirror.end()
    narcissus.end()
    never = trace.SpanContext(trace_id=0xABC, span_id=0xDEF, is_remote=True, trace_flags=trace.TraceFlags(1))
    orphan, _ = work.agent("orphan", links=[never], calls=[(6, 6)])
    # spans of one trace, one request each, in the order they ended (children first)
    slow, _ = work.agent("slow", calls=[(k, 1) for k in range(2, 12)])

    with ReceiverProcess(data_dir) as receiver:
        send(receiver, work.take(slow), per_request=1)  # written after its grace period, not at shutdown
        send(receiver, work.take())
    analysis, tasks = analyzed(data_dir)

    assert {t: trace_task(analysis, t)[:2] for t in (orch, researcher, writer)} == {
        orch: (tid(orch), 0),
        researcher: (tid(orch), 1),
        writer: (tid(orch), 2),
    }
    chain = tasks[tid(orch)]
    assert (chain["root_agent"], chain["traces"], chain["agent_runs"], chain["max_depth"]) == ("orchestrator", 3, 3, 2)
    assert (chain["llm_calls"], chain["input_tokens"], chain["output_tokens"]) == (3, 600, 60)
    fan = tasks[tid(lead)]
    assert (fan["traces"], fan["agents"], fan["max_depth"], fan["input_tokens"]) == (6, 6, 1, 15)
    assert {trace_task(analysis, w) for w in workers} == {(tid(lead), 1, "ok")}
    nested = task_tree(analysis, tid(boss))["root"]
    assert (nested["agent"], nested["direct"]["input_tokens"], nested["inclusive"]["input_tokens"]) == ("boss", 50, 90)
    assert [(c["agent"], c["depth"], c["direct"]["output_tokens"]) for c in nested["children"]] == [("planner", 1, 4)]
    # fan-in: the smallest (trace id, span id) among the parents is the parent
    first_parent = min((alpha, da.span_id), (beta, db.span_id))[0]
    assert trace_task(analysis, merger) == (tid(first_parent), 1, "multi_parent")
    top = min(ping_id, pong_id)
    assert {trace_task(analysis, t) for t in (ping_id, pong_id)} == {(tid(top), 0, "cycle"), (tid(top), 1, "cycle")}
    assert trace_task(analysis, narcissus.get_span_context().trace_id) == (
        tid(narcissus.get_span_context().trace_id),
        0,
        "self_link",
    )
    assert trace_task(analysis, orphan) == (tid(orphan), 0, "missing_parent")
    slow_task = tasks[tid(slow)]
    assert (slow_task["traces"], slow_task["llm_calls"], slow_task["input_tokens"], slow_task["stitch_state"]) == (
        1,
        10,
        sum(range(2, 12)),
        "ok",
    )
    # the receiver wrote the in-trace attribution on every span
    rows = analysis.con.execute(
        "SELECT name, agent_name, agent_depth, parent_agent_name FROM spans WHERE trace_id = ? ORDER BY name",
        [tid(boss)],
    ).fetchall()
    assert rows == [
        ("agent.loop", "planner", 1, "boss"),
        ("chat m1", "boss", 0, None),
        ("chat m1", "planner", 1, "boss"),
        ("invoke_agent boss", "boss", 0, None),
    ]


def test_sub_agent_before_restart_then_parent(data_dir: Path) -> None:
    work = Workload()
    orch, (d1,) = work.agent("orchestrator", calls=[(100, 10)], delegates=1)
    researcher, (d2,) = work.agent("researcher", links=[d1], calls=[(200, 20)], delegates=1)
    writer, _ = work.agent("writer", links=[d2], calls=[(300, 30)])
    with ReceiverProcess(data_dir) as receiver:
        send(receiver, work.take(researcher))
    with ReceiverProcess(data_dir) as receiver:  # a restart: its memory of the researcher trace is gone
        send(receiver, work.take(orch))
        send(receiver, work.take(writer))
    analysis, tasks = analyzed(data_dir)
    hints = analysis.con.execute(
        "SELECT DISTINCT trace_id, task_id, stitch_state FROM spans WHERE trace_id IN (?, ?)",
        [tid(researcher), tid(writer)],
    ).fetchall()
    assert sorted(hints) == sorted([(tid(researcher), None, "pending_parent"), (tid(writer), None, "pending_parent")])
    assert [trace_task(analysis, t) for t in (orch, researcher, writer)] == [
        (tid(orch), 0, "ok"),
        (tid(orch), 1, "ok"),
        (tid(orch), 2, "ok"),
    ]
    assert (tasks[tid(orch)]["input_tokens"], tasks[tid(orch)]["max_depth"], len(tasks)) == (600, 2, 1)


def test_one_task_across_two_receivers(data_dir: Path) -> None:
    work = Workload()
    lead, delegates = work.agent("lead", calls=[(1000, 100)], delegates=5)
    workers = [work.agent(f"worker{i}", links=[d], calls=[(i, 1)])[0] for i, d in enumerate(delegates, 1)]
    with ReceiverProcess(data_dir, writer_id="receiver-a") as a, ReceiverProcess(data_dir, writer_id="receiver-b") as b:
        send(b, [s for w in workers for s in work.take(w)], wait=False)
        send(a, work.take(lead))
    writers = {p.name.split("-0")[0] for p in (data_dir / "spans").glob("date=*/*.parquet")}
    assert writers == {"receiver-a", "receiver-b"}
    analysis, tasks = analyzed(data_dir)
    assert list(tasks) == [tid(lead)]
    task = tasks[tid(lead)]
    assert (task["traces"], task["agent_runs"], task["input_tokens"], task["output_tokens"]) == (6, 6, 1015, 105)
    tree = task_tree(analysis, tid(lead))["root"]
    assert sorted(c["agent"] for c in tree["children"]) == [f"worker{i}" for i in range(1, 6)]
    assert (tree["direct"]["input_tokens"], tree["inclusive"]["input_tokens"]) == (1000, 1015)


def test_memory_limit_writes_early_and_the_analyzer_still_resolves(data_dir: Path) -> None:
    work = Workload()
    orch, (d1,) = work.agent("orchestrator", calls=[(k, 1) for k in range(1, 9)], delegates=1)
    sub, _ = work.agent("helper", links=[d1], calls=[(100, 10)])
    with ReceiverProcess(data_dir, "--max-held-spans", "3") as receiver:
        # 10 spans one by one: past 3 held, the trace is written early, in parts
        send(receiver, work.take(orch), per_request=1, wait=False)
        send(receiver, work.take(sub), per_request=1, wait=False)
    analysis, tasks = analyzed(data_dir)
    states = dict(
        analysis.con.execute(
            "SELECT stitch_state, count(*) FROM spans WHERE trace_id = ? GROUP BY 1", [tid(orch)]
        ).fetchall()
    )
    assert states.get("early_flush", 0) >= 1 and sum(states.values()) == 10
    assert [trace_task(analysis, t)[:2] for t in (orch, sub)] == [(tid(orch), 0), (tid(orch), 1)]
    task = tasks[tid(orch)]
    assert (task["input_tokens"], task["output_tokens"], task["agent_runs"]) == (36 + 100, 8 + 10, 2)
    assert "early_flush" in task["stitch_state"].split(",")
    root = task_tree(analysis, tid(orch))["root"]
    assert (root["agent"], root["direct"]["llm_calls"], [c["agent"] for c in root["children"]]) == (
        "orchestrator",
        8,
        ["helper"],
    )
