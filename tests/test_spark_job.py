"""The Spark job (analyzer/spark/job.py) in Spark's local mode answers what DuckDB answers on the same
dataset: cost by agent and by task (inclusive and direct), exactly-once tokens, the analyzer's price table
exported as Parquet. The dataset is a synthetic one plus every stitching scenario (cycles, shared calls,
LangGraph graph runs), links carried by top-level agent runs and copies of spans (the analyzer's choice among
them). One Spark session for the module (a JVM start costs seconds)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pyarrow as pa
import pytest
from stitch_scenarios import (
    BASE_NS,
    agent,
    all_scenarios,
    chain_of_three,
    graph,
    llm,
    node,
    sid,
    span,
    stitch,
    stitched_rows,
    tid,
    write_rows,
)

from analyzer.analysis import Analysis
from analyzer.cost import CostQuery, cost_rows
from analyzer.spark.__main__ import main as spark_cli
from analyzer.spark.job import TOKENS, run, spark_session
from analyzer.synthetic import generate
from collector_ext.schema import SPANS
from collector_ext.storage.compaction import Compactor
from collector_ext.storage.dataset_files import DatasetFiles
from collector_ext.storage.stores import LocalStore

pytestmark = pytest.mark.slow
FIGURES = ["llm_calls", *TOKENS, "unpriced_calls", "calls_without_usage", "token_cost_usd", "reported_cost_usd"]


@pytest.fixture(scope="module")
def spark():
    # local mode on a small dataset: a few shuffle partitions, not the cluster default of 200
    session = spark_session("agentmeter-test", **{"spark.master": "local[2]", "spark.sql.shuffle.partitions": "2"})
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("spark") / "data"
    generate(root, tasks=150, seed=11, days=2, start=datetime(2026, 11, 2, tzinfo=UTC), chunk_tasks=25)
    # half merged and half not: the job must honour the compaction rule (inputs kept: grace not over)
    Compactor(LocalStore(root), grace_seconds=3600, clock=lambda: datetime(2026, 11, 3, 12, tzinfo=UTC)).run(
        through=datetime(2026, 11, 2).date()
    )
    # a call with audio tokens (priced at gpt-audio's audio prices) and a call that reported no usage
    at = datetime(2026, 11, 3, 9, tzinfo=UTC)
    calls = [
        {"input_tokens": 3000, "output_tokens": 1200, "input_audio_tokens": 2500, "output_audio_tokens": 1000,
         "usage_counted": True, "response_id": "resp-audio"},
        {"usage_counted": False},
    ]  # fmt: skip
    rows = [
        {f.name: None for f in SPANS}
        | {
            "trace_id": (900 + n).to_bytes(16, "big"),
            "span_id": (1).to_bytes(8, "big"),
            "name": "chat",
            "start_time": at,
            "end_time": at,
            "category": "llm",
            "provider": "openai",
            "request_model": "gpt-audio",
            "agent_name": "voice",
            "stitch_state": "ok",
            **call,
        }  # fmt: skip
        for n, call in enumerate(calls)
    ]
    DatasetFiles(root, "extra").write("spans", pa.Table.from_pylist(rows, schema=SPANS))
    write_rows(stitch([trace for scenario in all_scenarios() for trace in scenario.traces]), root, "scenarios")
    write_rows(stitch(AGENT_RUN_LINKS), root, "agent-runs")
    _write_copies(root)
    return root


# Links carried by top-level agent runs (tasks_resolve.sql): the roots carry none. Trace 301: the agent run
# under an HTTP root links to trace 300. Trace 302: a wrapper (no work, one agent run inside) is not a run, so
# the run inside it is the top-level one and its link counts. Trace 303: a LangGraph graph run carries it.
AGENT_RUN_LINKS = [
    [agent(300, 1, name="planner"), span(300, 2, 1, name="delegate"), llm(300, 3, 1, (30, 3))],
    [span(301, 1, name="POST /run"), agent(301, 2, 1, name="worker", links=[(300, 2)]), llm(301, 3, 2, (31, 3))],
    [
        span(302, 1, name="POST /run"),
        agent(302, 2, 1, name="shell"),
        agent(302, 3, 2, name="inner", links=[(300, 2)]),
        llm(302, 4, 3, (32, 3)),
    ],
    [  # a LangGraph graph's run (the parent of its node spans) is an agent run and carries the link
        span(303, 1, name="POST /run"),
        graph(303, 2, 1, name="researcher", links=[(300, 2)]),
        node(303, 3, 2, name="agent", category="agent"),
        llm(303, 4, 3, (33, 3)),
    ],
]


def _write_copies(root):
    """Copies of chain_of_three's spans, each differing in tokens so that the wrong choice shows: a copy
    written in parts (early_flush) received later loses to the whole one; of two whole copies the later
    received_time wins; at equal received_time the first file (writer id order) wins."""
    rows = {row["span_id"]: row for row in stitched_rows(chain_of_three().traces)}
    call_1, call_2, call_3 = rows[sid(1, 3)], rows[sid(2, 3)], rows[sid(3, 2)]
    later = BASE_NS + 5_000_000_000
    write_rows([{**call_1, "input_tokens": 9_000, "stitch_state": "early_flush", "received_time": later}], root, "a")
    write_rows([{**call_2, "input_tokens": 9_000}], root, "a")  # older than the scenario's copy: loses
    write_rows([{**call_2, "input_tokens": 222, "received_time": later}], root, "b")  # the latest: kept
    write_rows([{**call_3, "input_tokens": 333, "received_time": later}], root, "c")  # first file: kept
    write_rows([{**call_3, "input_tokens": 9_000, "received_time": later}], root, "d")


def _exact(value):
    return Decimal(value).normalize() if isinstance(value, Decimal) else value


def duckdb_rows(root, by, direct=False):
    analysis = Analysis.open(root)
    rows = cost_rows(analysis, CostQuery(by=[by], direct=direct)).rows
    analysis.con.close()
    return rows


def test_spark_answers_what_duckdb_answers(spark, dataset, tmp_path, capsys):
    prices = tmp_path / "prices.parquet"
    assert spark_cli(["export-prices", "--data", str(dataset), "--out", str(prices)]) == 0
    assert capsys.readouterr().out.endswith(f"price rows written to {prices}\n")
    result = run(spark, str(dataset), str(prices))
    assert result.not_covered == {"split_traces": 0}

    expected_agents = {
        row["agent"]: {name: _exact(row[name]) for name in FIGURES} for row in duckdb_rows(dataset, "agent")
    }
    spark_agents = {row["agent"]: {name: _exact(row[name]) for name in FIGURES} for row in result.by_agent.collect()}
    assert len(expected_agents) > 5 and spark_agents == expected_agents
    assert any(v["unpriced_calls"] for v in expected_agents.values())  # the self-hosted model is unpriced
    voice = expected_agents["voice"]  # the audio call (priced at its audio prices) and the call without usage
    assert (voice["llm_calls"], voice["calls_without_usage"], voice["unpriced_calls"]) == (2, 1, 0)

    inclusive = {row["task"]: row for row in duckdb_rows(dataset, "task")}
    direct = {row["task"]: row for row in duckdb_rows(dataset, "task", direct=True)}
    spark_tasks = {row["task"]: row.asDict() for row in result.by_task.collect()}
    assert len(inclusive) > 150 + 2 and set(spark_tasks) == set(inclusive)
    # cycles cut at their smallest trace, shared calls merged, links of top-level agent runs followed
    for top, below in [(40, [41, 42]), (70, [71]), (300, [301, 302, 303]), (91, [92]), (1, [2, 3])]:
        assert tid(top).hex() in spark_tasks and not {tid(t).hex() for t in below} & set(spark_tasks), top
    assert inclusive[tid(300).hex()]["input_tokens"] == 30 + 31 + 32 + 33
    assert inclusive[tid(1).hex()]["input_tokens"] == 100 + 222 + 333  # the copies the analyzer keeps
    for task, row in inclusive.items():
        got = spark_tasks[task]
        assert {n: _exact(got[n]) for n in FIGURES} == {n: _exact(row[n]) for n in FIGURES}, task
        # a task whose top trace makes no call (fan_out_five's lead) has no direct row
        own = direct[task]["token_cost_usd"] if task in direct else None
        assert _exact(got["direct_cost_usd"]) == _exact(own), task
    # sub-agents make inclusive differ from direct for some tasks
    assert any(_exact(spark_tasks[t]["direct_cost_usd"]) != _exact(r["token_cost_usd"]) for t, r in inclusive.items())
