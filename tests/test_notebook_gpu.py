"""notebooks/gpu_slices.ipynb executed by a real kernel (nbclient) against a generated GPU dataset."""

from __future__ import annotations

from pathlib import Path

import pytest
from notebook_runner import committed_without_outputs, execute, figures, text_of

from analyzer.dataset import open_dataset
from analyzer.gpu import gpu_report, gpu_timeline
from analyzer.gpu_charts import timeline_step_seconds
from analyzer.gpu_synthetic import AGENTS, DAY, NAMESPACES, RESTART_GAP, synthetic_gpu

NOTEBOOK = "gpu_slices.ipynb"


def test_committed_notebook_has_no_outputs() -> None:
    assert committed_without_outputs(NOTEBOOK)


@pytest.mark.slow
def test_notebook_draws_timeline_idle_hours_and_agent_cost(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synthetic_gpu(data_dir, slices=6, days=2, spans=600, seed=3)
    monkeypatch.setenv("AGENTMETER_DATA", str(data_dir))
    monkeypatch.delenv("AGENTMETER_GPU_PRICES", raising=False)
    nb = execute(NOTEBOOK, tmp_path)

    # each slice is held all day but for a 10-minute restart gap (and the poller's last second)
    allocated_hours = 6 * 2 * (DAY - 1 - RESTART_GAP) / 3600
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert text_of(code[0]).startswith(f"6 slices, {allocated_hours:,.1f} allocated slice-hours")
    timeline, namespaces, agents = figures(nb)
    assert len(timeline["data"]) == 6
    assert all(0 <= y <= 1 for trace in timeline["data"] for y in trace["y"])
    # the buckets the report draws too: about 100 over the allocations' two days (29 min each)
    con = open_dataset(data_dir).con
    gpu_report(con, "slice")
    step = timeline_step_seconds(open_dataset(data_dir))
    first = sorted({r["slice_id"] for r in gpu_timeline(con, step)})[0]
    expected = [r["time"].isoformat() for r in gpu_timeline(con, step) if r["slice_id"] == first]
    assert timeline["data"][0]["x"] == expected and 90 <= len(expected) <= 110
    idle, busy = namespaces["data"]
    assert sorted(idle["x"]) == sorted(NAMESPACES)
    assert sum(idle["y"]) + sum(busy["y"]) == pytest.approx(allocated_hours, abs=1e-4)
    names = agents["data"][0]["x"]
    assert set(names) == set(AGENTS) | {"(no span)"}
    assert all(cost > 0 for cost in agents["data"][0]["y"])
