"""The analyzer's task resolution (analyzer/tasks.py + sql/tasks_*.sql) over real Parquet datasets."""

from __future__ import annotations

from pathlib import Path

import pytest
from stitch_scenarios import (
    Scenario,
    agent,
    all_scenarios,
    chain_of_three,
    deep_scenarios,
    llm,
    refs,
    span,
    stitch,
    tid,
    write_rows,
)

from analyzer.dataset import open_dataset
from analyzer.tasks import install_task_views
from collector_ext.schema import STITCH_EARLY
from collector_ext.traces.stitching import Stitcher

SCENARIOS = {s.name: s for s in [*all_scenarios(), *deep_scenarios()]}


def n(value: bytes | None) -> int | None:
    return int.from_bytes(value) if value is not None else None


def resolved(root: Path) -> tuple[dict, dict, dict]:
    con = open_dataset(root).con
    install_task_views(con)
    tasks = {
        n(t): (n(k), d, s)
        for t, k, d, s in con.execute("SELECT trace_id, task_id, depth, stitch_state FROM trace_tasks").fetchall()
    }
    runs = {
        (n(t), n(s) % 1000): (name, parent, depth)
        for t, s, name, parent, depth in con.execute(
            "SELECT trace_id, span_id, agent_name, parent_agent_name, depth FROM agent_runs"
        ).fetchall()
    }
    tokens = {
        n(task): (i, o)
        for task, i, o in con.execute(
            "SELECT t.task_id, sum(CASE WHEN counted THEN input_tokens ELSE 0 END),"
            " sum(CASE WHEN counted THEN output_tokens ELSE 0 END)"
            " FROM counted_spans JOIN trace_tasks AS t USING (trace_id) GROUP BY t.task_id"
        ).fetchall()
    }
    return tasks, runs, tokens


def assert_scenario(root: Path, scenario: Scenario) -> None:
    tasks, runs, tokens = resolved(root)
    assert tasks == scenario.tasks
    assert runs == scenario.runs
    assert tokens == scenario.tokens


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_scenario_resolves(name: str, data_dir: Path) -> None:
    scenario = SCENARIOS[name]
    write_rows(stitch(scenario.traces), data_dir)
    assert_scenario(data_dir, scenario)


def test_sub_agents_written_before_their_parents_by_two_writers(data_dir: Path) -> None:
    """Each trace in its own file, children first, alternating between two receivers' writer ids."""
    scenario = chain_of_three()
    for i, trace in enumerate(reversed(scenario.traces)):
        rows = Stitcher().finish_trace(refs(trace), None)  # a fresh receiver each time: nothing to link to
        write_rows(rows, data_dir, writer_id=("receiver-a", "receiver-b")[i % 2])
    files = sorted(p.name for p in (data_dir / "spans").glob("date=*/*.parquet"))
    assert files == ["receiver-a-00000001.parquet", "receiver-a-00000002.parquet", "receiver-b-00000001.parquet"]
    assert_scenario(data_dir, scenario)


def test_trace_written_in_parts_is_stitched_whole(data_dir: Path) -> None:
    """Memory pressure: the children of trace 1 were written early, its agent run (with a rollup) later."""
    stitcher = Stitcher()
    children = [span(1, 2, 1, name="delegate"), llm(1, 3, 1, (10, 1))]
    write_rows(stitcher.finish_trace(refs(children), STITCH_EARLY), data_dir)
    sub = [agent(2, 1, name="helper", links=[(1, 2)]), llm(2, 2, 1, (20, 2))]
    write_rows(stitcher.finish_trace(refs(sub), None), data_dir)
    boss = stitcher.finish_trace(refs([agent(1, 1, name="boss", input_tokens=99, output_tokens=9)]), None)
    assert boss[0].usage_counted is True  # the receiver never saw both parts together: a wrong hint
    write_rows(boss, data_dir)
    tasks, runs, tokens = resolved(data_dir)
    assert tasks == {1: (1, 0, "ok"), 2: (1, 1, "ok")}
    assert runs == {(1, 1): ("boss", None, 0), (2, 1): ("helper", "boss", 1)}
    assert tokens == {1: (10 + 20, 1 + 2)}  # the rollup is not counted on top of the calls
    con = open_dataset(data_dir).con
    install_task_views(con)
    attributed = con.execute("SELECT n.agent_span_id FROM span_agent n WHERE n.trace_id = ?", [tid(1)]).fetchall()
    assert {row[0] for row in attributed} == {(1 * 1000 + 1).to_bytes(8, "big")}


def test_keep_genai_falls_back_to_the_parent_traces_top_agent(data_dir: Path) -> None:
    """The delegate span (category other) was not written; the link still lands under the parent's run."""
    traces = [
        [agent(1, 1, name="boss"), span(1, 2, 1, name="delegate"), llm(1, 3, 2, (5, 5))],
        [agent(2, 1, name="helper", links=[(1, 2)]), llm(2, 2, 1, (6, 6))],
    ]
    write_rows(stitch(traces, keep="genai"), data_dir)
    tasks, runs, tokens = resolved(data_dir)
    assert tasks == {1: (1, 0, "ok"), 2: (1, 1, "ok")}
    assert runs == {(1, 1): ("boss", None, 0), (2, 1): ("helper", "boss", 1)}
    assert tokens == {1: (11, 11)}


def test_long_chain_and_long_cycle(data_dir: Path) -> None:
    chain = [[agent(100, 1, name="a0"), span(100, 2, 1)]]
    chain += [[agent(100 + i, 1, name=f"a{i}", links=[(99 + i, 2)]), span(100 + i, 2, 1)] for i in range(1, 40)]
    ring = [[agent(200 + i, 1, name=f"r{i}", links=[(200 + (i + 1) % 5, 2)]), span(200 + i, 2, 1)] for i in range(5)]
    write_rows(stitch(chain + ring), data_dir)
    tasks, runs, _ = resolved(data_dir)
    assert {t: v for t, v in tasks.items() if t < 200} == {100 + i: (100, i, "ok") for i in range(40)}
    # ring 200 -> 201 -> ... -> 204 -> 200: 200 is the top, the others hang below it in reverse order
    assert {t: v for t, v in tasks.items() if t >= 200} == {
        200: (200, 0, "cycle"),
        204: (200, 1, "cycle"),
        203: (200, 2, "cycle"),
        202: (200, 3, "cycle"),
        201: (200, 4, "cycle"),
    }
    assert runs[(139, 1)] == ("a39", "a38", 39)


def test_empty_dataset_has_empty_views(data_dir: Path) -> None:
    (data_dir / "spans").mkdir()
    tasks, runs, tokens = resolved(data_dir)
    assert (tasks, runs, tokens) == ({}, {}, {})
