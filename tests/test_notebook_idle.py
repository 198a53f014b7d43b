"""notebooks/idle_and_warm_pools.ipynb executed by a real kernel (nbclient) against a generated dataset."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from idle_datasets import bursty, periodic, poisson, write_runs
from notebook_runner import execute, figures, text_of

NOTEBOOK = "idle_and_warm_pools.ipynb"


@pytest.mark.slow
def test_notebook_draws_the_curves(data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runs = (
        poisson("triage", 120, mean_gap_s=90, duration_s=20, seed=5)
        + periodic("nightly", 10, every_s=600, duration_s=60)
        + bursty("research", 3, 4, inner_gap_s=5, pause_s=3600, duration_s=10)
    )
    write_runs(data_dir, runs)
    monkeypatch.setenv("AGENTMETER_DATA", str(data_dir))
    monkeypatch.setenv("AGENTMETER_COLD_START", "8")
    nb = execute(NOTEBOOK, tmp_path)

    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert "3 agents, 142 runs" in text_of(code[0])
    survival, cooldown, pool = figures(nb)
    by_name = {trace["name"]: trace for trace in survival["data"]}
    assert list(by_name) == ["triage", "research", "nightly"]  # busiest first
    nightly = by_name["nightly"]
    # every nightly gap is 540 s: P(gap > t) is 1 up to 300 s and 0 from 600 s
    assert nightly["y"][:7] == [1.0] * 7 and nightly["y"][7:] == [0.0] * (len(nightly["y"]) - 7)
    pools = {trace["name"]: trace for trace in pool["data"]}
    assert pools["research (8 s start-up)"]["y"] == [1.0, 0.5, 0.0]  # 4 claims per burst 5 s apart, 8 s refills
    assert pools["nightly (8 s start-up)"]["y"] == [1.0, 0.0]
    assert len(cooldown["data"]) == 3
    docs = [d for d in yaml.safe_load_all(text_of(code[-1])) if d]
    assert [d["kind"] for d in docs] == ["SandboxWarmPool", "ScaledObject"]
    assert docs[1]["spec"]["triggers"][0]["metadata"]["agent"] == "triage"
