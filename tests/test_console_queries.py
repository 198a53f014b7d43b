"""The query functions the console added to the query layer, on a synthetic dataset: a task's calls (`analyze
task --calls`), the listing's sorts and filters, the price list, and a kept snapshot that answers as the
plain views do and keeps answering while a newer state of the dataset is prepared."""

from __future__ import annotations

import json
import shutil
import time
from decimal import Decimal
from pathlib import Path

import pytest

from analyzer import sandbox_cost
from analyzer.analysis import Analysis
from analyzer.cli import main
from analyzer.cost import CostQuery, cost_rows, totals
from analyzer.dataset import AnalyzerError
from analyzer.gpu import GpuPrices
from analyzer.gpu_synthetic import synthetic_gpu
from analyzer.price_list import price_list
from analyzer.sandbox_cost import agent_gpu_costs, kept_agent_gpu_costs
from analyzer.snapshot import LATER_STEPS, DatasetCache, Snapshot, keep_charges, prepare
from analyzer.synthetic import generate
from analyzer.task_queries import TaskQuery, count_tasks, list_tasks, task_tree
from analyzer.timeparse import TimeRange


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("console-queries") / "data"
    generate(root, tasks=80, seed=5)
    return root


def runs(node: dict) -> list[dict]:
    return [node, *(run for child in node["children"] for run in runs(child))]


def test_each_runs_calls_add_up_to_its_direct_figures(dataset: Path) -> None:
    analysis = Analysis.open(dataset)
    checked = 0
    for row in list_tasks(analysis, TaskQuery(sort="depth", limit=10)):
        tree = task_tree(analysis, bytes.fromhex(row["task_id"]), calls=True)
        for run in runs(tree["root"]):
            calls = run["calls"]
            assert sum(c["kind"] == "tool" for c in calls) == run["direct"]["tool_calls"]
            for name in ("llm_calls", "input_tokens", "output_tokens", "unpriced_calls"):
                assert sum(c[name] for c in calls) == run["direct"][name], name
            costs = [c["total_cost_usd"] for c in calls if c["total_cost_usd"] is not None]
            assert (sum(costs, Decimal(0)) if costs else None) == run["direct"]["total_cost_usd"]
            assert [c["start"] for c in calls] == sorted(c["start"] for c in calls)
            checked += len(calls)
        assert {run["trace_id"] for run in runs(tree["root"])} != {row["task_id"]}  # linked sub-agent traces
    assert checked > 50


def test_the_cli_task_calls_json_is_the_tree(dataset: Path, capsys: pytest.CaptureFixture[str]) -> None:
    analysis = Analysis.open(dataset)
    task = list_tasks(analysis, TaskQuery(sort="cost", limit=1))[0]["task_id"]
    assert main(["task", task[:16], "--calls", "--format", "json", "--data", str(dataset)]) == 0
    tree = json.loads(capsys.readouterr().out)
    calls = [c for run in runs(tree["root"]) for c in run["calls"]]
    assert sum(c["llm_calls"] for c in calls) == tree["root"]["inclusive"]["llm_calls"]
    assert {c["kind"] for c in calls} == {"llm", "tool"}


def test_listing_sorts_and_filters(dataset: Path) -> None:
    analysis = Analysis.open(dataset)
    every = list_tasks(analysis, TaskQuery())
    assert count_tasks(analysis, TaskQuery()) == len(every) == 80
    by_cost = [r["inclusive_cost_usd"] for r in list_tasks(analysis, TaskQuery(sort="cost"))]
    assert by_cost == sorted(by_cost, reverse=True)
    cheapest = [r["inclusive_cost_usd"] for r in list_tasks(analysis, TaskQuery(sort="cost", desc=False))]
    assert cheapest == sorted(by_cost)
    newest = [r["start"] for r in list_tasks(analysis, TaskQuery(sort="start", desc=True))]
    assert newest == sorted(newest, reverse=True)
    agents = [r["root_agent"] for r in list_tasks(analysis, TaskQuery(sort="agent"))]
    assert agents == sorted(agents)
    deep = list_tasks(analysis, TaskQuery(min_depth=2))
    assert deep and all(r["max_depth"] >= 2 for r in deep) and len(deep) < len(every)
    assert count_tasks(analysis, TaskQuery(min_depth=2)) == len(deep)
    median = sorted(by_cost)[len(by_cost) // 2]
    costly = list_tasks(analysis, TaskQuery(min_cost=float(median)))
    assert {r["task_id"] for r in costly} == {r["task_id"] for r in every if r["inclusive_cost_usd"] >= median}
    with pytest.raises(AnalyzerError, match="unknown sort"):
        TaskQuery(sort="size")  # type: ignore[arg-type]


def test_the_price_list_sums_to_the_totals(dataset: Path) -> None:
    analysis = Analysis.open(dataset)
    rows = price_list(analysis)
    figures = totals(analysis)
    assert sum(r["llm_calls"] for r in rows) == figures["llm_calls"]
    assert sum(r["unpriced_calls"] for r in rows) == figures["unpriced_calls"] > 0
    assert sum(Decimal(r["token_cost_usd"]) for r in rows if r["token_cost_usd"] is not None) == Decimal(
        figures["token_cost_usd"]
    )
    unpriced = [r for r in rows if r["source"] is None]
    assert [(r["provider"], r["model"], r["unpriced_reason"]) for r in unpriced] == [
        ("vllm", "acme-coder-13b", "unknown provider")
    ]
    gpt = next(r for r in rows if r["model"] == "gpt-4o-mini")  # genai-prices: $0.15 / $0.60 per M, cache $0.075
    assert (gpt["input_usd_per_mtok"], gpt["output_usd_per_mtok"], gpt["cache_read_usd_per_mtok"]) == (0.15, 0.6, 0.075)


def test_a_kept_snapshot_answers_as_the_plain_views(dataset: Path) -> None:
    plain, kept = Analysis.open(dataset), Analysis.open(dataset)
    prepare(kept)
    window = TimeRange.parse("2026-11-03")
    for by in (["agent"], ["day", "model"], ["label:team"], ["task"]):
        query = CostQuery(by=by, window=window)
        assert cost_rows(kept, query).rows == cost_rows(plain, query).rows
    query = TaskQuery(sort="cost", limit=20, agent="code-writer")
    assert list_tasks(kept, query) == list_tasks(plain, query)


def test_a_charges_only_question_goes_before_the_rest_of_the_preparation(dataset: Path) -> None:
    plain, kept = Analysis.open(dataset), Analysis.open(dataset)
    keep_charges(kept)
    snapshot = Snapshot((), kept, pending=list(LATER_STEPS))
    query = CostQuery(by=["agent"], window=TimeRange.parse("2026-11-03"))
    overview = snapshot.answer("overview", lambda a: cost_rows(a, query).rows, charges_only=True)
    assert overview == cost_rows(plain, query).rows
    assert snapshot.pending == list(LATER_STEPS)  # the tasks not resolved for it
    assert not kept.has_relation("task_rows")
    listing = snapshot.answer("tasks", lambda a: list_tasks(a, TaskQuery(sort="cost", limit=20)))
    assert snapshot.pending == []  # any other question finishes the preparation first, then reads the kept rows
    assert kept.con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE database_name = 'kept' AND table_name = 'task_rows'"
    ).fetchone() == (1,)
    assert listing == list_tasks(plain, TaskQuery(sort="cost", limit=20))


def test_latest_answers_from_the_current_state_while_a_newer_one_is_prepared(dataset: Path, tmp_path: Path) -> None:
    root = tmp_path / "live"
    shutil.copytree(dataset, root)
    cache = DatasetCache(root, None, None)
    first, refreshing = cache.latest()
    assert not refreshing and cache.opened == 1
    generate(root, tasks=5, seed=99, writer_id="later")  # a receiver wrote more files
    current, refreshing = cache.latest()
    assert current is first and refreshing  # the page answers now, from what it has
    deadline = time.monotonic() + 60
    while (newest := cache.latest())[1]:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert newest[0] is not first and cache.opened == 2
    assert count_tasks(newest[0].analysis, TaskQuery()) == 85
    assert cache.snapshot() is newest[0]


def test_every_agents_gpu_cost_is_prepared_once_per_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Agents page's recommendation reads every agent's GPU cost; a server prepares it with the state."""
    root = tmp_path / "data"
    generate(root, tasks=80, seed=5)
    synthetic_gpu(root, slices=3, days=1, spans=200, seed=4)
    plain, kept = Analysis.open(root), Analysis.open(root)
    expected = agent_gpu_costs(plain.dataset, GpuPrices())
    assert expected  # some agents' pods held slices
    prepare(kept)
    monkeypatch.setattr(sandbox_cost, "agent_gpu_costs", lambda *_: pytest.fail("computed again"))
    assert kept_agent_gpu_costs(kept) == expected
