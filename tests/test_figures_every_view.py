"""One value per figure: every figure (LLM calls, tokens, unpriced calls, token / GPU / total / reported cost,
a task's direct and inclusive cost, GPU busy time) computed through every view — CLI JSON, CSV and table,
the HTTP API, the HTML report, the FinOps notebook — on the demo's dataset (the loadgen workload through a
real receiver, with GPU slices) and on a synthetic one, and held equal."""

from __future__ import annotations

import math
from decimal import Decimal
from pathlib import Path

import pytest
from conftest import DemoRun
from fastapi.testclient import TestClient
from views import cli, cli_csv, cli_json, footer, notebook_headline, plain, report

from analyzer.analysis import Analysis
from analyzer.api import create_app
from analyzer.cost import totals
from analyzer.figures import COUNT_FIGURES, MONEY_FIGURES
from analyzer.output import money
from analyzer.synthetic import generate

pytestmark = pytest.mark.slow
KEYS = (
    "agent",
    "provider",
    "model",
    "span_provider",
    "span_model",
    "namespace",
    "service",
    "day",
    "week",
    "month",
    "task",
    "label:team",
)


@pytest.fixture(params=["demo", "synthetic"])
def dataset(request, tmp_path_factory) -> Path:
    if request.param == "demo":
        run: DemoRun = request.getfixturevalue("demo_run")
        assert run.returncode == 0, run.stdout + run.stderr
        return run.data_dir
    root = tmp_path_factory.mktemp("synthetic") / "data"
    generate(root, tasks=60, seed=21)
    return root


def test_every_figure_is_one_value_in_every_view(dataset: Path, capsys, tmp_path: Path, monkeypatch) -> None:
    data = ("--data", str(dataset))
    analysis = Analysis.open(dataset)
    exact = totals(analysis)
    headline = plain(exact)
    assert headline["llm_calls"] > 0 and headline["unpriced_calls"] > 0
    client = TestClient(create_app(dataset))

    # the totals: CLI JSON and CSV, the API, the report (its exact figures and its words), the notebook
    assert cli_json(capsys, "cost", *data) == [headline]
    assert cli_csv(capsys, "cost", *data) == [headline]
    assert client.get("/api/totals").json() == headline
    assert client.get("/api/cost").json() == [headline]
    embedded, page = report(client)
    assert embedded == {"headline": headline}
    calls, unpriced = headline["llm_calls"], headline["unpriced_calls"]
    assert f"{calls:,} LLM calls, {unpriced:,} unpriced calls" in page
    assert f"{unpriced:,} of {calls:,} calls have no price" in page
    assert f"<b>{money(exact['total_cost_usd'])}</b> total cost" in page
    assert notebook_headline(dataset, tmp_path, monkeypatch) == headline

    # every grouping: the same rows in JSON, CSV and the API; groups add up to the totals; the table's total
    # row is the totals, as people read them
    for key in KEYS:
        rows = cli_json(capsys, "cost", "--by", key, *data)
        assert (
            rows
            and rows
            == cli_csv(capsys, "cost", "--by", key, *data)
            == client.get("/api/cost", params={"by": key}).json()
        ), key
        total = "inclusive_cost_usd" if key == "task" else "total_cost_usd"
        for name in COUNT_FIGURES:
            assert sum(r[name] for r in rows) == headline[name], (key, name)
        for name in MONEY_FIGURES:
            column = total if name == "total_cost_usd" else name
            values = [r[column] for r in rows if r[column] is not None]
            if headline[name] is None:
                assert not values, (key, name)
            else:
                assert math.isclose(sum(values), headline[name], rel_tol=1e-12, abs_tol=1e-15), (key, name)
        shown_total = footer(cli(capsys, "cost", "--by", key, *data))
        assert shown_total["llm_calls"] == f"{calls:,}" and shown_total["unpriced_calls"] == f"{unpriced:,}"
        assert shown_total[total] == (money(exact["total_cost_usd"]) if exact["total_cost_usd"] is not None else "-")
        assert shown_total["reported_cost_usd"] == (
            money(exact["reported_cost_usd"]) if exact["reported_cost_usd"] is not None else "-"
        )

    # a task: one cost in cost --by task, tasks, task, and the API; calls and unpriced calls add up
    tasks = cli_json(capsys, "tasks", *data)
    assert sum(t["llm_calls"] for t in tasks) == calls and sum(t["unpriced_calls"] for t in tasks) == unpriced
    inclusive = {r["task"]: r for r in cli_json(capsys, "cost", "--by", "task", *data)}
    direct = {r["task"]: r for r in cli_json(capsys, "cost", "--by", "task", "--direct", *data)}
    assert set(inclusive) == {t["task_id"] for t in tasks}
    for task in tasks:
        mine = inclusive[task["task_id"]]
        assert (task["inclusive_cost_usd"], task["llm_calls"], task["unpriced_calls"]) == (
            mine["inclusive_cost_usd"], mine["llm_calls"], mine["unpriced_calls"])  # fmt: skip
        assert task["direct_cost_usd"] == direct.get(task["task_id"], {}).get("direct_cost_usd")
    assert client.get("/api/tasks", params={"top": 1000, "sort": "start"}).json()["tasks"] == tasks
    for task in sorted(tasks, key=lambda t: -(t["inclusive_cost_usd"] or 0))[:3]:
        tree = cli_json(capsys, "task", task["task_id"][:16], *data)
        assert tree == client.get(f"/api/tasks/{task['task_id'][:16]}").json()
        assert (tree["inclusive_cost_usd"], tree["direct_cost_usd"]) == (
            task["inclusive_cost_usd"], task["direct_cost_usd"])  # fmt: skip
        assert tree["root"]["inclusive"]["total_cost_usd"] == task["inclusive_cost_usd"]
        assert tree["root"]["inclusive"]["unpriced_calls"] == task["unpriced_calls"]

    # GPU time: what `analyze cost` charges to calls without a token price is the busy time `analyze gpu`
    # attributes to them; a call priced by GPU time is never unpriced
    gpu = {r["agent"]: r for r in cli_json(capsys, "gpu", "--by", "agent", *data)}
    by_agent = {r["agent"]: r for r in cli_json(capsys, "cost", "--by", "agent", *data)}
    for agent, row in by_agent.items():
        if row["gpu_busy_cost_usd"]:
            assert row["token_cost_usd"] is None  # self-hosted: no token price
            assert Decimal(str(row["gpu_busy_cost_usd"])) == Decimal(str(gpu[agent]["busy_cost_usd"]))
            assert row["unpriced_calls"] < row["llm_calls"]
