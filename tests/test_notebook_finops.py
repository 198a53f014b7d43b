"""notebooks/finops_cost.ipynb runs top to bottom (nbclient, a real kernel) against a generated dataset."""

from __future__ import annotations

from pathlib import Path

from notebook_runner import NOTEBOOKS, committed_without_outputs, execute

from analyzer.cost import CostQuery, cost_rows
from analyzer.dataset import open_dataset
from analyzer.synthetic import generate

NOTEBOOK = "finops_cost.ipynb"


def _text(cell) -> str:
    parts = []
    for output in cell.get("outputs", []):
        parts.append(output.get("text", ""))
        parts.append(str(output.get("data", {}).get("text/plain", "")))
    return "".join(parts)


def test_committed_without_outputs() -> None:
    assert committed_without_outputs(NOTEBOOK)


def test_notebook_runs_and_shows_the_total(data_dir: Path, monkeypatch) -> None:
    generate(data_dir, tasks=60, seed=21)
    rows, _ = cost_rows(open_dataset(data_dir), CostQuery(by=["provider"]))
    total = sum(float(r["cost_usd"] or 0) for r in rows)
    unpriced = sum(r["unpriced_calls"] for r in rows)
    monkeypatch.setenv("AGENTMETER_DATA", str(data_dir))
    monkeypatch.delenv("AGENTMETER_PRICES", raising=False)
    notebook = execute(NOTEBOOK, NOTEBOOKS)
    outputs = "\n".join(_text(c) for c in notebook.cells if c.cell_type == "code")
    assert not any(o.get("output_type") == "error" for c in notebook.cells for o in c.get("outputs", []))
    assert f"TOTAL_COST_USD = {total:,.2f}" in outputs
    assert f"unpriced: {unpriced:,}" in outputs and unpriced > 0
    assert "('vllm', 'acme-coder-13b'): 'unknown provider'" in outputs
