"""Running a committed notebook top to bottom with a real kernel (nbclient), and reading its outputs."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
PLOTLY = "application/vnd.plotly.v1+json"


def execute(name: str, cwd: Path, folder: Path = NOTEBOOKS) -> nbformat.NotebookNode:
    """Execute <folder>/<name> in `cwd` with this process's environment; raises on any cell error."""
    notebook = nbformat.read(folder / name, as_version=4)
    client = NotebookClient(notebook, kernel_name="python3", timeout=120, resources={"metadata": {"path": str(cwd)}})
    client.execute(env=dict(os.environ))
    return notebook


def committed_without_outputs(name: str) -> bool:
    """Notebooks are committed clean: no outputs, no execution counts."""
    code = [cell for cell in nbformat.read(NOTEBOOKS / name, as_version=4).cells if cell.cell_type == "code"]
    return bool(code) and all(not cell.get("outputs") and not cell.get("execution_count") for cell in code)


def figures(notebook: nbformat.NotebookNode) -> list[dict]:
    """The plotly figures the notebook drew, in order."""
    return [
        output["data"][PLOTLY]
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if PLOTLY in output.get("data", {})
    ]


def text_of(cell: nbformat.NotebookNode) -> str:
    """What a cell printed (stream outputs)."""
    return "".join(output.get("text", "") for output in cell.outputs if output.get("output_type") == "stream")


def shown(cell: nbformat.NotebookNode) -> str:
    """What a cell displayed as its value (text/plain of its execute_result)."""
    return "".join(
        output["data"].get("text/plain", "") for output in cell.outputs if output.get("output_type") == "execute_result"
    )
