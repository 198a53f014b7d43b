"""Reading one figure through each view, as a user sees it: the `analyze` CLI (JSON, CSV, the table's total
row), the HTML report's embedded figures, and the FinOps notebook's headline cell. Shared by the tests that
hold a figure equal across views (test_figures_every_view.py, frameworks/test_calls_without_usage.py)."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from notebook_runner import execute, shown

from analyzer.cli import main


def cli(capsys, *args: str) -> str:
    assert main(list(args)) == 0
    return capsys.readouterr().out


def cli_json(capsys, *args: str) -> Any:
    return json.loads(cli(capsys, *args, "--format", "json"))


def cli_csv(capsys, *args: str) -> list[dict]:
    """The CSV rows with numbers read back as numbers and empty cells as None."""

    def value(text: str):
        if text == "":
            return None
        for kind in (int, float):
            try:
                return kind(text)
            except ValueError:
                pass
        return text

    return [
        {k: value(v) for k, v in row.items()}
        for row in csv.DictReader(io.StringIO(cli(capsys, *args, "--format", "csv")))
    ]


def plain(figures: dict) -> dict:
    """Exact figures (Decimal) as the JSON views give them: numbers and None."""
    return {k: v if v is None or isinstance(v, int) else float(v) for k, v in figures.items()}


def footer(table: str) -> dict[str, str]:
    """A rich table's total row, by column header, as printed."""
    lines = table.splitlines()
    header = next(line for line in lines if line.startswith("┃"))
    total = next(line for line in lines if line.startswith("│") and line.split("│")[1].strip() == "total")
    return dict(
        zip((c.strip() for c in header.split("┃")[1:-1]), (c.strip() for c in total.split("│")[1:-1]), strict=True)
    )


def report(client: TestClient) -> tuple[dict, str]:
    """The report page's embedded figures (its `agentmeter-figures` JSON) and its text."""
    page = client.get("/report").text
    embedded = re.search(r'id="agentmeter-figures">(.*?)</script>', page, re.S)
    assert embedded, "the report embeds its figures"
    return json.loads(embedded.group(1)), page


def notebook_headline(data: Path, tmp_path: Path, monkeypatch) -> dict:
    """The FinOps notebook run on `data` (no price files from the environment): its headline cell's value."""
    monkeypatch.setenv("AGENTMETER_DATA", str(data))
    for variable in ("AGENTMETER_PRICES", "AGENTMETER_GPU_PRICES"):
        monkeypatch.delenv(variable, raising=False)
    notebook = execute("finops_cost.ipynb", tmp_path)
    cell = next(c for c in notebook.cells if c.cell_type == "code" and c.source.startswith("headline = totals"))
    return eval(shown(cell), {"__builtins__": {}})  # a dict of plain numbers and None
