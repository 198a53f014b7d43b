"""The task queries: one task answered from its own traces (analyzer/task_scope.py) equals the whole
dataset's answer for every task of datasets with every odd link graph; prefixes; failed tasks; task-cost
statistics per agent; task cost the same in every view."""

from __future__ import annotations

import json
import statistics
from decimal import Decimal
from pathlib import Path

import pytest
from stitch_scenarios import all_scenarios, stitched_rows, tid, write_rows

from analyzer.analysis import Analysis
from analyzer.cli import main
from analyzer.cost import CostQuery, cost_rows
from analyzer.dataset import AnalyzerError
from analyzer.gpu_synthetic import synthetic_gpu
from analyzer.synthetic import generate
from analyzer.task_queries import TaskQuery, list_tasks, resolve_task_ref, task_stats, task_tree
from analyzer.task_scope import open_task

PRICES = "prices:\n  - provider: vllm\n    model: m1\n    input: 1.0\n    output: 2.0\n"


def scenarios_dataset(root: Path) -> Path:
    rows = stitched_rows([trace for scenario in all_scenarios() for trace in scenario.traces])
    for row in rows:
        if row["category"] == "llm":
            row["provider"], row["request_model"] = "vllm", "m1"
    write_rows(rows, root)
    return root


def every_task_scoped_equals_whole(root: Path, prices: Path | None = None, limit: int | None = None) -> int:
    whole = Analysis.open(root, prices)
    listing = {t["task_id"]: t for t in list_tasks(whole, TaskQuery())}
    assert listing
    for task_id in list(listing)[:limit]:
        expected = task_tree(whole, bytes.fromhex(task_id))
        scoped, found = open_task(root, task_id, prices)
        assert found.hex() == task_id
        assert task_tree(scoped, found) == expected, task_id
        # one cost per task in every view: the listing, the tree, the tree's root
        row = listing[task_id]
        assert (row["inclusive_cost_usd"], row["direct_cost_usd"]) == (
            expected["inclusive_cost_usd"],
            expected["direct_cost_usd"],
        )
        assert expected["root"]["inclusive"]["total_cost_usd"] == expected["inclusive_cost_usd"]
        assert (row["llm_calls"], row["input_tokens"]) == (
            expected["root"]["inclusive"]["llm_calls"],
            expected["root"]["inclusive"]["input_tokens"],
        )
    return len(listing)


def test_scoped_task_equals_whole_dataset_on_odd_link_graphs(data_dir: Path, tmp_path: Path) -> None:
    prices = tmp_path / "prices.yaml"
    prices.write_text(PRICES)
    tasks = every_task_scoped_equals_whole(scenarios_dataset(data_dir), prices)
    assert tasks == len({t for s in all_scenarios() for t, (top, _d, _s) in s.tasks.items() if t == top})


def test_scoped_task_equals_whole_dataset_on_synthetic_data(data_dir: Path) -> None:
    generate(data_dir, tasks=40, seed=11)
    assert every_task_scoped_equals_whole(data_dir) == 40


def test_scoped_task_equals_whole_dataset_with_gpu_time(data_dir: Path) -> None:
    synthetic_gpu(data_dir, slices=3, days=1, spans=200, seed=4)
    assert every_task_scoped_equals_whole(data_dir, limit=25) > 0


def test_prefixes(data_dir: Path, capsys) -> None:
    generate(data_dir, tasks=40, seed=11)
    analysis = Analysis.open(data_dir)
    ids = [t["task_id"] for t in list_tasks(analysis, TaskQuery())]
    unique = next(i for i in ids if sum(j.startswith(i[:4]) for j in ids) == 1)
    assert resolve_task_ref(analysis, unique[:4].upper()).hex() == unique
    assert main(["task", unique[:4], "--data", str(data_dir), "--format", "json"]) == 0
    by_prefix = json.loads(capsys.readouterr().out)
    assert main(["task", unique, "--data", str(data_dir), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == by_prefix and by_prefix["task_id"] == unique
    shared = next(i[:1] for i in ids if sum(j.startswith(i[:1]) for j in ids) > 1)
    candidates = sorted(i for i in ids if i.startswith(shared))
    with pytest.raises(AnalyzerError, match=f"ambiguous task id '{shared}': it starts {candidates[0]}, "):
        resolve_task_ref(analysis, shared)
    assert main(["task", shared, "--data", str(data_dir)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: ambiguous task id '{shared}'") and all(c in err for c in candidates[:10])


def test_a_sub_agent_trace_is_not_a_task(data_dir: Path) -> None:
    scenarios_dataset(data_dir)
    with pytest.raises(AnalyzerError, match=f"{tid(2).hex()} is not a task id: .* sub-agent trace of task"):
        resolve_task_ref(Analysis.open(data_dir), tid(2).hex())
    with pytest.raises(AnalyzerError, match=f"{tid(3).hex()} is not a task id: .* sub-agent trace of another task"):
        open_task(data_dir, tid(3).hex())  # chain 1 -> 2 -> 3: from its own traces, 3 cannot know its task is 1


def test_failed_tasks_and_cost_per_task_by_agent(data_dir: Path, capsys) -> None:
    generate(data_dir, tasks=120, seed=8)  # 3 of its tasks fail (their root span ends in error)
    analysis = Analysis.open(data_dir)
    tasks = list_tasks(analysis, TaskQuery())
    failed = list_tasks(analysis, TaskQuery(status="failed"))
    assert len(failed) == 3 and failed == [t for t in tasks if t["status"] == "failed"]
    rows = {r["agent"]: r for r in task_stats(analysis, "agent")}
    assert set(rows) == {t["root_agent"] for t in tasks}
    for agent, row in rows.items():
        mine = [t for t in tasks if t["root_agent"] == agent]
        costs = [Decimal(str(t["inclusive_cost_usd"])) for t in mine if t["inclusive_cost_usd"] is not None]
        assert (row["tasks"], row["failed_tasks"]) == (len(mine), sum(t["status"] == "failed" for t in mine))
        assert float(row["mean_task_cost_usd"]) == pytest.approx(float(statistics.fmean(costs)), rel=1e-9)
        quantiles = statistics.quantiles(costs, n=20, method="inclusive")  # linear, as quantile_cont
        assert float(row["p50_task_cost_usd"]) == pytest.approx(float(statistics.median(costs)), rel=1e-9)
        assert float(row["p95_task_cost_usd"]) == pytest.approx(float(quantiles[18]), rel=1e-9)
        failed_cost = sum(Decimal(str(t["inclusive_cost_usd"] or 0)) for t in mine if t["status"] == "failed")
        assert float(row["failed_cost_usd"]) == pytest.approx(float(failed_cost), rel=1e-9)
    assert main(["tasks", "--by", "agent", "--data", str(data_dir), "--format", "json"]) == 0
    assert [r["agent"] for r in json.loads(capsys.readouterr().out)] == list(rows)
    weeks = task_stats(analysis, "week")
    assert [w["week"] for w in weeks] == sorted(w["week"] for w in weeks) and sum(w["tasks"] for w in weeks) == 120


def test_task_cost_is_one_figure_in_every_view(data_dir: Path, capsys) -> None:
    generate(data_dir, tasks=30, seed=2)
    analysis = Analysis.open(data_dir)
    listing = {t["task_id"]: t for t in list_tasks(analysis, TaskQuery())}
    inclusive = {r["task"]: r for r in cost_rows(analysis, CostQuery(by=["task"])).rows}
    direct = {r["task"]: r for r in cost_rows(analysis, CostQuery(by=["task"], direct=True)).rows}
    assert set(listing) == set(inclusive) == set(direct)
    for task_id, row in listing.items():
        assert row["inclusive_cost_usd"] == inclusive[task_id]["inclusive_cost_usd"]
        assert row["direct_cost_usd"] == direct[task_id]["direct_cost_usd"]
        assert row["llm_calls"] == inclusive[task_id]["llm_calls"]
