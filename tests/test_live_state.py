"""LiveState: in-flight tasks and agent runs from spans as they arrive (children first)."""

from __future__ import annotations

import threading
import time

from stitch_scenarios import agent, chain_of_three, llm, refs, span, tool

from collector_ext.traces.live_state import LiveState


def with_ns(row: dict, namespace: str) -> dict:
    row["k8s_namespace"] = namespace
    return row


def test_reverse_order_requests_track_one_run_until_its_root() -> None:
    live = LiveState()
    spans = [agent(80, 1, name="slow"), *(llm(80, k, 1, (k, 1)) for k in range(2, 6))]
    for row in reversed(spans[1:]):  # children first, one request each
        live.spans_seen(refs([row]))
        assert live.in_flight() == 1
    # only the service is known so far: the run is counted under service.name
    assert live.snapshot()["agents"] == {"svc": 1}
    assert live.in_flight(agent="svc") == 1 and live.in_flight(agent="slow") == 0
    live.spans_seen(refs([spans[0]]))  # the root (the agent run) ended
    assert live.in_flight() == 0
    assert live.snapshot() == {
        "version": live.version,
        "tasks": 0,
        "agent_runs": 0,
        "agents": {},
        "namespaces": {},
        "services": {},
    }


def test_agent_identity_learned_from_spans_and_filters() -> None:
    live = LiveState()
    live.spans_seen(
        refs(
            [
                with_ns(tool(1, 3, 2), "team-a"),
                with_ns(agent(1, 2, 1, name="planner"), "team-a"),  # nested agent run ended, root still open
                with_ns(llm(2, 2, 1, (1, 1), agent_name="coder"), "team-b"),  # own identity on a non-agent span
                with_ns(span(3, 2, 1, service="other"), "team-b"),
            ]
        )
    )
    assert live.in_flight() == 3
    assert live.in_flight(agent="planner") == 1
    assert live.in_flight(agent="coder") == 1
    assert live.in_flight(agent="other") == 1
    assert live.in_flight(namespace="team-b") == 2
    assert live.in_flight(service="svc") == 2
    assert live.in_flight(agent="coder", namespace="team-b") == 1
    assert live.in_flight(agent="coder", namespace="team-a") == 0
    snap = live.snapshot()
    assert (snap["tasks"], snap["agent_runs"]) == (3, 3)
    assert snap["agents"] == {"planner": 1, "coder": 1, "other": 1}
    assert snap["namespaces"] == {"team-a": 1, "team-b": 2}


def test_linked_sub_agent_is_not_a_task_and_finished_traces_stay_gone() -> None:
    live = LiveState()
    chain = chain_of_three()
    orchestrator_child = chain.traces[0][2]  # the orchestrator's LLM call: its root is still running
    researcher = chain.traces[1][0]  # the sub-agent's root carries the link...
    live.spans_seen(refs([orchestrator_child, dict(researcher, parent_span_id=b"\x00" * 7 + b"\x09")]))
    snap = live.snapshot()
    assert (snap["agent_runs"], snap["tasks"]) == (2, 1)
    live.trace_finished(orchestrator_child["trace_id"])
    assert live.in_flight() == 1
    live.spans_seen(refs([orchestrator_child]))  # late span of a trace already handed on: not a new flight
    assert live.in_flight() == 1


def test_bounded_number_of_traces() -> None:
    live = LiveState(max_traces=3)
    live.spans_seen(refs([llm(t, 2, 1, (1, 1)) for t in range(1, 11)]))
    assert live.in_flight() == 3
    assert live.snapshot()["services"] == {"svc": 3}


def test_wait_changed_wakes_on_change_and_times_out() -> None:
    live = LiveState()
    version = live.version
    started = time.monotonic()
    assert live.wait_changed(version, timeout=0.05) == version
    assert time.monotonic() - started >= 0.04
    timer = threading.Timer(0.05, live.spans_seen, args=(refs([llm(1, 2, 1, (1, 1))]),))
    timer.start()
    try:
        new_version = live.wait_changed(version, timeout=5)
    finally:
        timer.join(timeout=5)
    assert new_version > version and live.in_flight() == 1


def test_concurrent_updates_keep_exact_counts() -> None:
    live = LiveState()

    def worker(base: int) -> None:
        for t in range(base, base + 200):
            live.spans_seen(refs([llm(t, 2, 1, (1, 1))]))
        for t in range(base, base + 200, 2):
            live.trace_finished(llm(t, 2, 1, (1, 1))["trace_id"])

    threads = [threading.Thread(target=worker, args=(1 + 1000 * i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert live.in_flight() == 400
    assert live.snapshot()["agents"] == {"svc": 400} and live.snapshot()["tasks"] == 400
