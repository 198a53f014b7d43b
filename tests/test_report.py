"""`analyze report`: a self-contained HTML page with the cost sections, extensible by other modules."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import pytest

from analyzer import report
from analyzer.cli import main
from analyzer.cost import CostQuery, cost_rows
from analyzer.dataset import open_dataset
from analyzer.synthetic import generate


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("report")
    generate(root, tasks=120, seed=5)
    return root


def test_report_is_self_contained_with_the_cost_sections(dataset: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setattr(report, "SECTION_MODULES", ())  # only the cost sections (other modules add theirs)
    out = tmp_path / "out" / "report.html"
    assert main(["report", "--data", str(dataset), "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == f"report written to {out.resolve()}"
    page = out.read_text()
    titles = re.findall(r"<h2>([^<]*)</h2>", page)
    assert titles == [
        "Cost by agent over time (top 10 agents, the rest as &#x27;other&#x27;)",
        "Cost by model",
        "Top 15 tasks (inclusive of every sub-agent)",
        "Unpriced share (models with no price: add them to a --prices file)",
        "Unpriced models",
    ]
    assert not re.search(r"<script[^>]+src=", page)  # plotly.js inline: works offline
    assert page.count("Plotly.newPlot") == 3
    rows, _ = cost_rows(open_dataset(dataset), CostQuery(by=["task"], inclusive=True, top=15))
    assert [r["task"] for r in rows] == re.findall(r"<tr><td><code>([0-9a-f]{32})</code>", page)
    con = open_dataset(dataset)
    total = cost_rows(con, CostQuery(by=["provider"]))[0]
    cost = sum(r["cost_usd"] or 0 for r in total)
    unpriced = sum(r["unpriced_calls"] for r in total)
    assert f"<b>${cost:,.2f}</b> computed cost, {unpriced:,} unpriced calls" in page
    assert "<code>vllm/acme-coder-13b</code>: unknown provider" in page


def test_other_modules_add_sections(dataset: Path, monkeypatch) -> None:
    appended = types.ModuleType("fake_idle_sections")
    appended.report_sections = lambda ds: [("Idle curves", f"<p>{ds.root.name} idle</p>")]
    monkeypatch.setitem(sys.modules, "fake_idle_sections", appended)
    monkeypatch.setattr(report, "SECTION_MODULES", ("fake_idle_sections", "no_such_module_here"))
    monkeypatch.setattr(report, "SECTIONS", [lambda ds: [("Listed section", "<p>listed</p>")]])
    page = report.build_report(open_dataset(dataset))
    titles = re.findall(r"<h2>([^<]*)</h2>", page)
    assert titles[-2:] == ["Listed section", "Idle curves"]
    assert f"<p>{dataset.name} idle</p>" in page


def test_missing_dataset_is_one_line(tmp_path: Path, capsys) -> None:
    assert main(["report", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "r.html")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no dataset at") and len(err.splitlines()) == 1
    assert not (tmp_path / "r.html").exists()
