"""The Spark job (analyzer/spark/job.py) in Spark's local mode answers what DuckDB answers on the same
dataset: cost by agent and by task (inclusive and direct), exactly-once tokens, the analyzer's price table
exported as Parquet. One Spark session for the module (a JVM start costs seconds)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from analyzer.analysis import Analysis
from analyzer.cost import CostQuery, cost_rows
from analyzer.spark.__main__ import main as spark_cli
from analyzer.spark.job import TOKENS, run, spark_session
from analyzer.synthetic import generate
from collector_ext.storage.compaction import Compactor
from collector_ext.storage.stores import LocalStore

pytestmark = pytest.mark.slow
FIGURES = ["llm_calls", *TOKENS, "unpriced_calls", "token_cost_usd", "reported_cost_usd"]


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
    return root


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

    inclusive = {row["task"]: row for row in duckdb_rows(dataset, "task")}
    direct = {row["task"]: row for row in duckdb_rows(dataset, "task", direct=True)}
    spark_tasks = {row["task"]: row.asDict() for row in result.by_task.collect()}
    assert len(inclusive) == 150 and set(spark_tasks) == set(inclusive)
    for task, row in inclusive.items():
        got = spark_tasks[task]
        assert {n: _exact(got[n]) for n in FIGURES} == {n: _exact(row[n]) for n in FIGURES}, task
        assert _exact(got["direct_cost_usd"]) == _exact(direct[task]["token_cost_usd"]), task
    # sub-agents make inclusive differ from direct for some tasks
    assert any(_exact(spark_tasks[t]["direct_cost_usd"]) != _exact(r["token_cost_usd"]) for t, r in inclusive.items())
