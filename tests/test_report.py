"""`analyze report`: a self-contained HTML page whose numbers are the query layer's."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from analyzer import report
from analyzer.analysis import Analysis
from analyzer.cli import main
from analyzer.cost import totals
from analyzer.output import money
from analyzer.synthetic import generate
from analyzer.task_queries import TaskQuery, list_tasks


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("report")
    generate(root, tasks=120, seed=5)
    return root


def embedded_figures(page: str) -> dict:
    found = re.search(r'<script type="application/json" id="agentmeter-figures">(.*?)</script>', page, re.S)
    assert found is not None
    return json.loads(found.group(1))


def test_report_is_self_contained_with_the_cost_sections(dataset: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out" / "report.html"
    assert main(["report", "--data", str(dataset), "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == f"report written to {out.resolve()}"
    page = out.read_text()
    titles = re.findall(r"<h2>([^<]*)</h2>", page)
    assert titles[:5] == [
        "Cost by agent over time (top 10 agents, the rest as &#x27;other&#x27;)",
        "Cost by model",
        "Top 15 tasks (inclusive of every sub-agent)",
        "Unpriced share (models with no price: add them to a --prices file)",
        "Calls whose cost is unknown",
    ]
    assert "Idle time by agent (busiest first)" in titles  # the idle sections follow (no GPU data here)
    assert not re.search(r"<script[^>]+src=", page)  # plotly.js inline: works offline
    analysis = Analysis.open(dataset)
    tasks = list_tasks(analysis, TaskQuery(sort="cost", limit=15))
    assert [t["task_id"] for t in tasks] == re.findall(r"<tr><td><code>([0-9a-f]{32})</code>", page)
    shown_costs = re.findall(r"<td>(\$[0-9.,]+|-)</td></tr>", page)[:15]
    assert shown_costs == [money(t["inclusive_cost_usd"]) for t in tasks]
    figures = totals(analysis)
    assert embedded_figures(page) == {"headline": {k: v if v is None or isinstance(v, int) else float(v)
                                                   for k, v in figures.items()}}  # fmt: skip
    assert (
        f"<b>{money(figures['total_cost_usd'])}</b> total cost ({money(figures['token_cost_usd'])} tokens + "
        f"$0 GPU busy time), {figures['llm_calls']:,} LLM calls, {figures['unpriced_calls']:,} unpriced calls"
    ) in page
    assert f"{figures['unpriced_calls']:,} of {figures['llm_calls']:,} calls have no price" in page
    assert "<code>vllm/acme-coder-13b</code>: unknown provider" in page


def test_sections_are_listed_functions(dataset: Path, monkeypatch) -> None:
    monkeypatch.setattr(report, "SECTIONS", [lambda a: [("Listed section", f"<p>{a.root.name}</p>")]])
    page = report.build_report(Analysis.open(dataset))
    assert re.findall(r"<h2>([^<]*)</h2>", page) == ["Listed section"]
    assert f"<p>{dataset.name}</p>" in page


def test_missing_dataset_is_one_line(tmp_path: Path, capsys) -> None:
    assert main(["report", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "r.html")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no dataset at") and len(err.splitlines()) == 1
    assert not (tmp_path / "r.html").exists()
