"""The stitching rules are one set: in memory (collector_ext/traces/stitching.py) and in SQL (analyzer/sql/tasks_*.sql)
give the same answers: the task of every trace, the parent agent and depth of every agent run, the counted
tokens. Scenarios in several arrival orders, plus random link graphs (cycles, fan-in, self-links, missing
targets, agentless traces) generated with hypothesis.
"""

from __future__ import annotations

import random
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from stitch_scenarios import agent, all_scenarios, deep_scenarios, llm, rows_of, span, stitch, write_rows

from analyzer.dataset import open_dataset
from analyzer.tasks import install_task_views
from collector_ext.traces.stitching import Resolution, resolve_rows

SCENARIOS = {s.name: s for s in [*all_scenarios(), *deep_scenarios()]}


def sql_answers(root: Path) -> tuple[dict, dict, set]:
    con = open_dataset(root).con
    install_task_views(con)
    tasks = {
        t: (k, pt, ps, d, s)
        for t, k, pt, ps, d, s in con.execute(
            "SELECT trace_id, task_id, parent_trace_id, parent_span_id, depth, stitch_state FROM trace_tasks"
        ).fetchall()
    }
    runs = {
        (t, s): (k, name, (pt, ps) if ps is not None else None, parent, d)
        for t, s, k, name, pt, ps, parent, d in con.execute(
            "SELECT trace_id, span_id, task_id, agent_name, parent_agent_trace_id, parent_agent_span_id,"
            " parent_agent_name, depth FROM agent_runs"
        ).fetchall()
    }
    counted = {(t, s) for t, s in con.execute("SELECT trace_id, span_id FROM counted_spans WHERE counted").fetchall()}
    return tasks, runs, counted


def memory_answers(resolution: Resolution) -> tuple[dict, dict, set]:
    tasks = {
        t: (v.task_id, v.parent_trace_id, v.parent_span_id, v.depth, v.stitch_state)
        for t, v in resolution.tasks.items()
    }
    runs = {
        key: (r.task_id, r.agent_name, r.parent_agent, r.parent_agent_name, r.depth)
        for key, r in resolution.runs.items()
    }
    return tasks, runs, resolution.counted


def arrival_orders(traces: list[list[dict]]) -> dict[str, list[list[dict]]]:
    shuffled = list(traces)
    random.Random(7).shuffle(shuffled)
    return {"parents_first": traces, "children_first": list(reversed(traces)), "shuffled": shuffled}


@pytest.mark.parametrize("order", ["parents_first", "children_first", "shuffled"])
@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_scenarios_equal_in_memory_and_sql(name: str, order: str, data_dir: Path) -> None:
    scenario = SCENARIOS[name]
    traces = arrival_orders(scenario.traces)[order]
    spans = stitch(traces)
    rows = rows_of(spans)
    write_rows(rows, data_dir)
    in_sql = sql_answers(data_dir)
    in_memory = memory_answers(resolve_rows(spans))
    assert in_sql == in_memory
    # and both are the hand-worked answer
    assert {int.from_bytes(t): (int.from_bytes(v[0]), v[3], v[4]) for t, v in in_sql[0].items()} == scenario.tasks
    if order == "parents_first":
        # the receiver, seeing parents first, already wrote the final answer for every trace it could resolve
        for row in rows:
            if int.from_bytes(row["trace_id"]) in scenario.receiver_pending | scenario.merged_by_analyzer:
                continue
            assert row["task_id"] == in_sql[0][row["trace_id"]][0]
            run = in_sql[1].get((row["trace_id"], row["agent_span_id"]))
            if run is not None:
                assert (row["agent_name"], row["parent_agent_name"], row["agent_depth"]) == (run[1], run[3], run[4])
            assert row["usage_counted"] == ((row["trace_id"], row["span_id"]) in in_sql[2])


def random_traces(draw, count: int) -> list[list[dict]]:
    """Traces 1..count: each an optional agent run (or agentless), a delegate span, an LLM call, and 0-2
    links to random spans of random traces (itself, others, or trace 999 that never exists). LLM calls
    share response ids."""
    traces = []
    for t in range(1, count + 1):
        links = draw(
            st.lists(
                st.tuples(st.sampled_from([*range(1, count + 1), 999]), st.sampled_from([1, 2])),
                max_size=2,
            )
        )
        has_agent = draw(st.booleans()) or t == 1
        nested = draw(st.booleans())
        # the LLM call at its trace's own time, or at one moment shared by every trace (copies of one
        # response id in two traces are then one call seen twice: their tasks merge)
        at = {"start": -t * 10_000} if draw(st.booleans()) else {}
        response_id = draw(st.sampled_from([None, "r0", "r1"]))
        spans = []
        if has_agent:
            spans.append(agent(t, 1, name=f"agent{t % 4}", links=links, start=t % 3))
        else:
            spans.append(span(t, 1, name="root", links=links))
        spans.append(span(t, 2, 1, name="delegate"))
        if nested:
            spans.append(span(t, 3, 2, name="invoke_agent inner", category="agent", start=1))
            spans.append(llm(t, 4, 3, (t, 1), response_id=response_id, **at))
        else:
            spans.append(llm(t, 4, 2, (t, 1), response_id=response_id, **at))
        traces.append(spans)
    return traces


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_link_graphs_equal_in_memory_and_sql(data) -> None:
    count = data.draw(st.integers(min_value=1, max_value=9))
    traces = random_traces(data.draw, count)
    order = data.draw(st.permutations(range(count)))
    spans = stitch([traces[i] for i in order])
    with tempfile.TemporaryDirectory() as tmp:
        write_rows(rows_of(spans), Path(tmp))
        assert sql_answers(Path(tmp)) == memory_answers(resolve_rows(spans))
