"""notebooks/: opened as the README says, run by a real kernel (nbclient) on the demo's dataset and on
synthetic data, showing the query layer's figures, and exported to HTML (nbconvert) with every chart."""

from __future__ import annotations

import ast
import re
import shutil
from pathlib import Path

import nbformat
import pytest
from conftest import DemoRun
from nbconvert import HTMLExporter
from notebook_runner import NOTEBOOKS, committed_without_outputs, execute, figures, shown, text_of

from analyzer.analysis import Analysis
from analyzer.cost import CostQuery, cost_rows, totals
from analyzer.synthetic import generate

NOTEBOOK = "finops_cost.ipynb"
ALL = sorted(path.name for path in NOTEBOOKS.glob("*.ipynb"))


def plain_figures(analysis: Analysis) -> dict:
    return {k: v if v is None or isinstance(v, int) else float(v) for k, v in totals(analysis).items()}


def headline_of(notebook: nbformat.NotebookNode) -> dict:
    cell = next(c for c in notebook.cells if c.cell_type == "code" and c.source.startswith("headline = totals"))
    return ast.literal_eval(shown(cell))


@pytest.mark.parametrize("name", ALL)
def test_committed_without_outputs(name: str) -> None:
    assert committed_without_outputs(name)


@pytest.mark.parametrize("name", ALL)
def test_money_in_markdown_is_money_not_a_formula(name: str) -> None:
    cells = [c for c in nbformat.read(NOTEBOOKS / name, as_version=4).cells if c.cell_type == "markdown"]
    assert all(not re.search(r"(?<!\\)\$", cell.source) for cell in cells)


@pytest.mark.slow
def test_finops_on_synthetic_data_shows_the_query_layers_figures(data_dir: Path, tmp_path: Path, monkeypatch) -> None:
    generate(data_dir, tasks=60, seed=21)
    monkeypatch.setenv("AGENTMETER_DATA", str(data_dir))
    for name in ("AGENTMETER_PRICES", "AGENTMETER_GPU_PRICES"):
        monkeypatch.delenv(name, raising=False)
    notebook = execute(NOTEBOOK, tmp_path)
    analysis = Analysis.open(data_dir)
    assert headline_of(notebook) == plain_figures(analysis)
    by_agent = {r["agent"]: float(r["total_cost_usd"]) for r in cost_rows(analysis, CostQuery(by=["agent"])).rows}
    chart = figures(notebook)[0]["data"][0]
    assert dict(zip(chart["x"], chart["y"], strict=True)) == by_agent
    outputs = "\n".join(text_of(c) for c in notebook.cells if c.cell_type == "code")
    assert "('vllm', 'acme-coder-13b'): 'unknown provider'" in outputs


@pytest.mark.slow
@pytest.mark.parametrize("name", ALL)
def test_on_the_demo_dataset_opened_as_the_readme_says(
    name: str, demo_run: DemoRun, tmp_path: Path, monkeypatch
) -> None:
    """`AGENTMETER_DATA=demo-data jupyter lab notebooks/`: the kernel runs in notebooks/, the path is relative
    to the folder above it. Exported to HTML, every chart is there with plotly.js inline (no network)."""
    project = tmp_path / "project"
    shutil.copytree(NOTEBOOKS, project / "notebooks")
    (project / "demo-data").symlink_to(demo_run.data_dir)
    monkeypatch.setenv("AGENTMETER_DATA", "demo-data")
    for variable in ("AGENTMETER_PRICES", "AGENTMETER_GPU_PRICES", "AGENTMETER_COLD_START"):
        monkeypatch.delenv(variable, raising=False)
    notebook = execute(name, project / "notebooks", folder=project / "notebooks")
    if name == NOTEBOOK:
        assert headline_of(notebook) == plain_figures(Analysis.open(demo_run.data_dir))
    drawn = figures(notebook)
    assert drawn
    page, _ = HTMLExporter().from_notebook_node(notebook)
    assert page.count('class="plotly-graph-div"') == len(drawn)
    inline = [s for s in re.findall(r"<script(?![^>]*\bsrc=)[^>]*>(.*?)</script>", page, re.S) if "plotly.js v" in s]
    assert len(inline) == 1  # plotly.js once, in the page itself
    assert not re.search(r"<script[^>]+src=[^>]*plotly", page)
