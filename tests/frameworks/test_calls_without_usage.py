"""A call without usage is still a call: `calls_without_usage` (analyzer/figures.py) is one value in every view
- `analyze cost` (table, JSON, CSV), `analyze tasks` and `analyze task`, `analyze tasks --by agent`, the HTTP
API, the HTML report, the FinOps notebook - with the calls counted in `llm_calls` and their cost unknown
(never 0, never left out silently), on the spans of two real instrumentations that send calls without
usage: Traceloop's openai-agents Chat Completions path (no usage at all) and OpenInference's (streamed calls
carry none), replayed through a real receiver.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from replay import capture_names, replay, truth_of
from test_framework_captures import REPORTED
from views import cli, cli_json, footer, notebook_headline, plain, report

from analyzer.analysis import Analysis
from analyzer.api import create_app
from analyzer.cost import totals
from analyzer.output import money

pytestmark = pytest.mark.slow
WITHOUT_USAGE = [n for n in capture_names() if any(REPORTED[n](c) is None for c in truth_of(n)["calls"])]


@pytest.fixture(scope="module", params=WITHOUT_USAGE)
def capture(request, tmp_path_factory) -> tuple[str, Path]:
    name = request.param
    data = tmp_path_factory.mktemp(name) / "dataset"
    replay(name, data)
    return name, data


def test_the_two_captures_send_calls_without_usage() -> None:
    assert WITHOUT_USAGE == ["openai-agents__openinference__chat", "openai-agents__traceloop__chat"]


def test_calls_without_usage_is_one_value_in_every_view(
    capture: tuple[str, Path], capsys, tmp_path: Path, monkeypatch
) -> None:
    name, data = capture
    calls = truth_of(name)["calls"]
    unknown = sum(REPORTED[name](c) is None for c in calls)  # what the instrumentation sent no usage for
    args = ("--data", str(data))
    headline = totals(Analysis.open(data))
    assert (headline["llm_calls"], headline["calls_without_usage"], headline["unpriced_calls"]) == (25, unknown, 0)
    everything_unknown = unknown == len(calls)
    # their cost is unknown: not zero, and with no call priced, no token cost at all
    assert (headline["token_cost_usd"] is None) == everything_unknown
    assert (headline["total_cost_usd"] is None) == everything_unknown
    client = TestClient(create_app(data))
    plain_headline = plain(headline)

    # the totals: CLI JSON and CSV, the API
    assert cli_json(capsys, "cost", *args) == [plain_headline] == client.get("/api/cost").json()
    assert client.get("/api/totals").json() == plain_headline
    (row,) = csv.DictReader(io.StringIO(cli(capsys, "cost", *args, "--format", "csv")))
    assert (row["llm_calls"], row["calls_without_usage"]) == ("25", str(unknown))
    assert row["total_cost_usd"] == ("" if everything_unknown else repr(plain_headline["total_cost_usd"]))

    # by agent: the groups add up, the table's total row and the note under it say it
    by_agent = cli_json(capsys, "cost", "--by", "agent", *args)
    assert by_agent == client.get("/api/cost", params={"by": "agent"}).json()
    assert sum(r["calls_without_usage"] for r in by_agent) == unknown
    table = cli(capsys, "cost", "--by", "agent", *args)
    shown_total = footer(table)
    assert (shown_total["llm_calls"], shown_total["calls_without_usage"]) == ("25", f"{unknown:,}")
    assert shown_total["total_cost_usd"] == ("-" if everything_unknown else money(headline["total_cost_usd"]))
    assert f"{unknown:,} calls without usage: their instrumentation reported no token counts" in table
    assert "their tokens and cost are unknown" in table

    # tasks, the task trees, task stats: the same calls
    tasks = cli_json(capsys, "tasks", *args)
    assert tasks == client.get("/api/tasks", params={"top": 1000, "sort": "start"}).json()["tasks"]
    assert sum(t["calls_without_usage"] for t in tasks) == unknown
    assert footer(cli(capsys, "tasks", *args))["calls_without_usage"] == f"{unknown:,}"
    stats = cli_json(capsys, "tasks", "--by", "agent", *args)
    assert sum(r["calls_without_usage"] for r in stats) == unknown
    for task in tasks:
        tree = cli_json(capsys, "task", task["task_id"], *args)
        assert tree == client.get(f"/api/tasks/{task['task_id']}").json()
        assert tree["root"]["inclusive"]["calls_without_usage"] == task["calls_without_usage"]
        runs = [tree["root"], *tree["root"]["children"]]
        assert sum(r["direct"]["calls_without_usage"] for r in runs) == task["calls_without_usage"]
        text = cli(capsys, "task", task["task_id"], *args)
        said = f"{task['calls_without_usage']} without usage: cost unknown"
        assert (said in text) == bool(task["calls_without_usage"]), text

    # the report: its exact figures and its words
    embedded, page = report(client)
    assert embedded == {"headline": plain_headline}
    assert f"{unknown:,} calls without usage (tokens and cost unknown)" in page
    assert f"{unknown:,} of 25 calls reported no usage: their tokens and cost are unknown" in page

    # the FinOps notebook
    assert notebook_headline(data, tmp_path, monkeypatch) == plain_headline
