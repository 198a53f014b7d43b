"""Unit tests of the receiver's Stitcher on span refs (collector_ext/traces/stitching.py)."""

from __future__ import annotations

import pytest
from stitch_scenarios import (
    agent,
    all_scenarios,
    chain_of_three,
    cycle,
    deep_scenarios,
    llm,
    refs,
    rows_of,
    sid,
    span,
    stitched_rows,
    tid,
    tool,
)

from collector_ext.schema import STITCH_EARLY, STITCH_NO_ROOT
from collector_ext.traces.span_refs import SpanRef
from collector_ext.traces.stitching import Stitcher, agent_run_name, response_key

SCENARIOS = {s.name: s for s in [*all_scenarios(), *deep_scenarios()]}


def n(trace_id: bytes | None) -> int | None:
    return int.from_bytes(trace_id) if trace_id is not None else None


def agent_rows(rows: list[dict]) -> dict[tuple[int, int], tuple[str, str | None, int]]:
    return {
        (n(r["trace_id"]), int.from_bytes(r["span_id"]) % 1000): (
            r["agent_name"],
            r["parent_agent_name"],
            r["agent_depth"],
        )
        for r in rows
        if r["agent_span_id"] == r["span_id"]  # the span of an agent run
    }


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_scenario_parents_first(name: str) -> None:
    scenario = SCENARIOS[name]
    rows = stitched_rows(scenario.traces)
    assert agent_rows(rows) == scenario.runs
    for trace, (task, _depth, state) in scenario.tasks.items():
        trace_rows = [r for r in rows if n(r["trace_id"]) == trace]
        assert trace_rows, trace
        if trace in scenario.receiver_pending:
            assert {(r["task_id"], r["stitch_state"]) for r in trace_rows} == {(None, "pending_parent")}
        elif trace in scenario.merged_by_analyzer:
            assert {(n(r["task_id"]), r["stitch_state"]) for r in trace_rows} == {(trace, "ok")}
        else:
            assert {(n(r["task_id"]), r["stitch_state"]) for r in trace_rows} == {(task, state)}
    counted: dict[int, list[int]] = {}
    for row in rows:
        if row["usage_counted"] and row["task_id"] is not None:
            totals = counted.setdefault(n(row["task_id"]), [0, 0])
            totals[0] += row["input_tokens"]
            totals[1] += row["output_tokens"]
    expected = {task: list(tokens) for task, tokens in scenario.tokens.items() if tokens != (0, 0)}
    expected = {t: v for t, v in expected.items() if t not in scenario.receiver_pending}
    assert {t: v for t, v in counted.items() if t not in scenario.receiver_pending} == expected


def test_every_span_attributed_to_nearest_agent_run() -> None:
    rows = stitched_rows(SCENARIOS["nested_in_trace"].traces)
    by_span = {int.from_bytes(r["span_id"]) % 1000: r for r in rows}
    boss, planner = sid(20, 2), sid(20, 3)
    assert by_span[4]["agent_span_id"] == planner and by_span[4]["agent_name"] == "planner"
    assert by_span[4]["agent_depth"] == 1 and by_span[4]["parent_agent_name"] == "boss"
    assert by_span[5]["agent_span_id"] == boss and by_span[5]["agent_depth"] == 0
    # outside every agent run (under the workflow root): the trace's top agent run
    assert by_span[6]["agent_span_id"] == boss and by_span[1]["agent_span_id"] == boss
    assert [by_span[k]["usage_counted"] for k in (1, 2, 3, 4, 5, 6)] == [False, False, False, True, True, True]


def test_rollup_counts_only_without_inference_usage_below() -> None:
    trace = [
        agent(1, 1, name="a", input_tokens=50, output_tokens=5),  # rollup, nothing below reported usage
        llm(1, 2, 1, (0, 0)),  # streaming span without usage
        agent(2, 1, name="b", input_tokens=70, output_tokens=7),  # rollup over a reporting LLM span
        llm(2, 2, 1, (70, 7)),
    ]
    rows = Stitcher().finish_trace(refs(trace[:2]), None) + Stitcher().finish_trace(refs(trace[2:]), None)
    assert [r.usage_counted for r in rows] == [True, False, False, True]


def test_duplicate_response_in_one_trace_counts_smallest_span() -> None:
    trace = [agent(1, 1, name="a"), llm(1, 3, 1, (9, 1), response_id="r"), llm(1, 2, 1, (9, 1), response_id="r")]
    rows = Stitcher().finish_trace(refs(trace), None)
    assert {int.from_bytes(r.span_id) % 1000: r.usage_counted for r in rows} == {1: False, 2: True, 3: False}


def test_sub_agent_before_parent_is_pending_and_the_parent_still_resolves() -> None:
    scenario = chain_of_three()
    rows = stitched_rows(reversed(scenario.traces))
    states = {n(r["trace_id"]): (n(r["task_id"]), r["stitch_state"]) for r in rows}
    assert states == {3: (None, "pending_parent"), 2: (None, "pending_parent"), 1: (1, "ok")}
    # unknown parent: no parent agent, depth from 0 (the analyzer gives the final answer)
    assert agent_rows(rows)[(3, 1)] == ("writer", None, 0)


def test_cycle_closing_through_a_pending_trace_is_recognised() -> None:
    rows = stitched_rows(cycle().traces)
    states = {n(r["trace_id"]): (n(r["task_id"]), r["stitch_state"]) for r in rows}
    assert states == {40: (None, "pending_parent"), 41: (40, "cycle"), 42: (40, "ok")}


def test_buffer_state_wins_and_early_parts_of_one_trace_stitch() -> None:
    stitcher = Stitcher()
    children = [llm(5, 2, 1, (3, 1)), tool(5, 3, 1)]
    part1 = stitcher.finish_trace(refs(children), STITCH_EARLY)
    assert {r.stitch_state for r in part1} == {STITCH_EARLY}
    assert {(r.agent_name, r.agent_span_id) for r in part1} == {("svc", None)}  # agent not seen yet
    part2 = stitcher.finish_trace(refs([agent(5, 1, name="late")]), STITCH_NO_ROOT)
    assert [(r.agent_name, r.stitch_state, n(r.task_id)) for r in part2] == [("late", "no_root", 5)]
    # a sub-agent linking into the first part still finds the trace and its top agent run
    sub = stitcher.finish_trace(refs([agent(6, 1, name="sub", links=[(5, 2)])]), None)
    assert (sub[0].parent_agent_name, sub[0].agent_depth, n(sub[0].task_id)) == ("late", 1, 5)


def test_keep_rules() -> None:
    plain = [span(7, 1, name="GET /health"), span(7, 2, 1, name="db")]
    mixed = [agent(8, 1, name="a"), span(8, 2, 1, name="delegate"), llm(8, 3, 1, (1, 1))]
    assert Stitcher(keep="trace").finish_trace(refs(plain), None) == []
    assert len(Stitcher(keep="trace").finish_trace(refs(mixed), None)) == 3
    genai = Stitcher(keep="genai").finish_trace(refs(mixed), None)
    assert [int.from_bytes(r.span_id) % 1000 for r in genai] == [1, 3]
    assert [int.from_bytes(r["span_id"]) % 1000 for r in rows_of(genai)] == [1, 3]  # the rows written
    assert len(Stitcher(keep="all").finish_trace(refs(plain), None)) == 2
    with pytest.raises(ValueError, match="keep must be one of"):
        Stitcher(keep="some")


def test_disabled_stitcher_only_filters() -> None:
    rows = Stitcher(enabled=False).finish_trace(refs([agent(9, 1, name="x"), span(9, 2, 1)]), None)
    assert len(rows) == 2 and rows[0].task_id is None and rows[0].usage_counted is None


def test_memory_bound_forgets_oldest_parents() -> None:
    stitcher = Stitcher(memory_items=3)
    for t, name in ((1, "old"), (2, "new1"), (3, "new2")):
        # a nested agent run with a delegate span: the spans of runs below the top one are indexed
        # (the top run has a tool call of its own: an agent span around one run and nothing else is a wrapper)
        runs = [agent(t, 1, name=name), agent(t, 2, 1, name=f"{name}-inner"), span(t, 3, 2), tool(t, 4, 1)]
        stitcher.finish_trace(refs(runs), None)
    assert len(stitcher._traces) == 3 and list(stitcher._spans) == [
        (tid(2), sid(2, 3)),
        (tid(3), sid(3, 2)),
        (tid(3), sid(3, 3)),
    ]
    # trace 1's spans left the span index, its trace entry did not: the link lands on its top agent run
    fallback = stitcher.finish_trace(refs([agent(4, 1, name="sub", links=[(1, 3)])]), None)
    assert (n(fallback[0].task_id), fallback[0].parent_agent_name, fallback[0].agent_depth) == (1, "old", 1)
    remembered = stitcher.finish_trace(refs([agent(5, 1, name="sub2", links=[(3, 3)])]), None)
    assert (n(remembered[0].task_id), remembered[0].parent_agent_name) == (3, "new2-inner")
    assert remembered[0].agent_depth == 2
    forgotten = stitcher.finish_trace(refs([agent(6, 1, name="sub3", links=[(1, 3)])]), None)  # trace 1 evicted
    assert (forgotten[0].task_id, forgotten[0].stitch_state) == (None, "pending_parent")


def test_malformed_parent_loop_does_not_hang() -> None:
    a, b = span(11, 1, 2, category="llm", input_tokens=1), span(11, 2, 1, category="tool")
    rows = Stitcher().finish_trace(refs([a, b]), None)
    assert [r.task_id for r in rows] == [tid(11), tid(11)]
    # in a parent loop every span is its own ancestor: covered by the LLM usage, so nothing else counts
    assert [r.usage_counted for r in rows] == [False, False]


def test_agent_run_name_fallbacks() -> None:
    def named(**fields) -> SpanRef:
        return SpanRef(trace_id=tid(1), span_id=sid(1, 1), **fields)

    assert agent_run_name(named(agent_name="own", name="agent.loop")) == "own"
    assert agent_run_name(named(name="invoke_agent Researcher", service_name="svc")) == "Researcher"
    assert agent_run_name(named(name="invoke_agent", service_name="svc")) == "svc"
    assert agent_run_name(named(name="agent.loop", service_name="svc")) == "svc"
    assert agent_run_name(named(name="PlannerAgent", service_name="svc")) == "PlannerAgent"


def test_cross_trace_duplicate_response_marked_later() -> None:
    rows = stitched_rows(SCENARIOS["duplicate_response"].traces)
    assert [(n(r["trace_id"]), r["usage_counted"]) for r in rows if r["response_id"]] == [(70, True), (71, False)]


def test_response_ids_are_remembered_as_fixed_size_hashes() -> None:
    """A client may send response ids of megabytes: the stitcher's memory keeps a 16-byte hash of each."""
    huge = "r" * (4 << 20)
    first = [agent(90, 1, name="a"), llm(90, 2, 1, (5, 1), response_id=huge)]
    again = [span(91, 1, name="sdk.call", category="llm", input_tokens=5, output_tokens=1, response_id=huge)]
    other = [span(92, 1, name="sdk.call", category="llm", input_tokens=5, output_tokens=1, response_id=huge + "x")]
    stitcher = Stitcher()
    counted = [r.usage_counted for trace in (first, again, other) for r in stitcher.finish_trace(refs(trace), None)]
    assert counted == [False, True, False, True]  # the same id once; a different one counts
    assert list(stitcher._responses) == [response_key(huge), response_key(huge + "x")]
    assert {len(key) for key in stitcher._responses} == {16}
