"""`analyze tasks` and `analyze task`: output shapes, filters, costs and one-line errors."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from stitch_scenarios import BASE_NS, chain_of_three, fan_out_five, stitch, stitched_rows, tid, write_rows

from analyzer.cli import main
from analyzer.task_queries import LIST_COLUMNS

CHAIN, LEAD = tid(1).hex(), tid(10).hex()
PRICES = "prices:\n  - provider: vllm\n    model: m1\n    input: 1.0\n    output: 2.0\n"


@pytest.fixture
def dataset(data_dir: Path) -> Path:
    rows = stitched_rows(chain_of_three().traces + fan_out_five().traces)
    for row in rows:
        if row["category"] == "llm":
            row["provider"], row["request_model"] = "vllm", "m1"
    write_rows(rows, data_dir)
    return data_dir


@pytest.fixture
def prices(tmp_path: Path) -> Path:
    path = tmp_path / "prices.yaml"
    path.write_text(PRICES)
    return path


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_tasks_json(dataset: Path, prices: Path, capsys) -> None:
    code, out, err = run(capsys, "tasks", "--data", str(dataset), "--prices", str(prices), "--format", "json")
    assert (code, err) == (0, "")
    rows = json.loads(out)
    assert [r["task_id"] for r in rows] == [CHAIN, LEAD]  # ordered by start
    chain = rows[0]
    money = ("token_cost_usd", "inclusive_cost_usd", "direct_cost_usd")
    assert list(chain) == list(LIST_COLUMNS)
    assert {k: v for k, v in chain.items() if k not in ("start", "end", *money)} == {
        "task_id": CHAIN,
        "root_agent": "orchestrator",
        "status": "ok",
        "traces": 3,
        "agent_runs": 3,
        "agents": 3,
        "max_depth": 2,
        "llm_calls": 3,
        "tool_calls": 1,
        "input_tokens": 600,
        "output_tokens": 60,
        "cache_read_tokens": 0,
        "cache_write_tokens": 0,
        "reasoning_tokens": 0,
        "unpriced_calls": 0,
        "calls_without_usage": 0,
        "gpu_busy_cost_usd": 0.0,
        "reported_cost_usd": None,
        "stitch_state": "ok",
    }
    assert chain["inclusive_cost_usd"] == chain["token_cost_usd"] == pytest.approx(600e-6 + 60 * 2e-6, rel=1e-12)
    assert chain["direct_cost_usd"] == pytest.approx(100e-6 + 10 * 2e-6, rel=1e-12)  # the top trace's own call
    assert chain["start"].startswith("2026-11-") and chain["start"] < chain["end"]
    lead = rows[1]
    assert (lead["traces"], lead["agents"], lead["max_depth"], lead["input_tokens"]) == (6, 6, 1, 15)
    assert lead["inclusive_cost_usd"] == pytest.approx(15 * 1e-6 + 5 * 2e-6, rel=1e-12)


def test_tasks_top_lists_the_most_expensive_first(data_dir: Path, prices: Path, capsys) -> None:
    rows = stitched_rows(chain_of_three().traces + fan_out_five().traces)
    for row in rows:
        if row["category"] == "llm":
            row["provider"], row["request_model"] = "vllm", "m1"
            if row["task_id"].hex() == CHAIN:  # the earlier task becomes the cheaper one
                row["input_tokens"], row["output_tokens"] = 1, 1
    write_rows(rows, data_dir)
    args = ("tasks", "--data", str(data_dir), "--prices", str(prices), "--format", "json")
    code, out, _ = run(capsys, *args)
    assert [r["task_id"] for r in json.loads(out)] == [CHAIN, LEAD]  # by start
    code, out, _ = run(capsys, *args, "--top", "2")
    assert code == 0
    assert [r["task_id"] for r in json.loads(out)] == [LEAD, CHAIN]  # by cost
    code, out, _ = run(capsys, *args, "--top", "1")
    assert [r["task_id"] for r in json.loads(out)] == [LEAD]
    code, _, err = run(capsys, "tasks", "--data", str(data_dir), "--top", "0")
    assert code == 2 and err.startswith("error: ") and len(err.strip().splitlines()) == 1


def test_tasks_without_prices_reports_unpriced(dataset: Path, capsys) -> None:
    code, out, _ = run(capsys, "tasks", "--data", str(dataset), "--format", "json")
    rows = json.loads(out)
    assert code == 0
    assert [(r["inclusive_cost_usd"], r["unpriced_calls"]) for r in rows] == [(None, 3), (None, 5)]


def test_tasks_filters_and_csv(dataset: Path, capsys) -> None:
    code, out, _ = run(capsys, "tasks", "--data", str(dataset), "--agent", "worker3", "--format", "csv")
    table = list(csv.DictReader(io.StringIO(out)))
    assert code == 0 and [r["task_id"] for r in table] == [LEAD]
    # chain traces start at BASE + 10 s .. 30 s, the fan-out at BASE + 100 s
    from datetime import UTC, datetime

    between = datetime.fromtimestamp(BASE_NS / 1e9 + 50, UTC).isoformat()
    _, out, _ = run(capsys, "tasks", "--data", str(dataset), "--since", between, "--format", "json")
    assert [r["task_id"] for r in json.loads(out)] == [LEAD]
    _, out, _ = run(capsys, "tasks", "--data", str(dataset), "--until", between, "--format", "json")
    assert [r["task_id"] for r in json.loads(out)] == [CHAIN]
    _, out, _ = run(capsys, "tasks", "--data", str(dataset), "--agent", "nobody", "--format", "json")
    assert json.loads(out) == []


def test_tasks_table(dataset: Path, capsys) -> None:
    code, out, _ = run(capsys, "tasks", "--data", str(dataset))  # piped: every column, nothing cut
    lines = out.splitlines()
    assert code == 0 and lines[0].strip() == "Tasks"
    header = [cell.strip() for cell in lines[2].split("┃")[1:-1]]
    assert header == list(LIST_COLUMNS)
    body = [
        dict(zip(header, (c.strip() for c in line.split("│")[1:-1]), strict=True))
        for line in lines
        if line.startswith("│")
    ]
    assert [(r["task_id"], r["root_agent"]) for r in body] == [
        (CHAIN[:16], "orchestrator"),
        (LEAD[:16], "lead"),
        ("total", ""),
    ]
    assert body[-1]["input_tokens"] == "615"
    assert body[-1]["inclusive_cost_usd"] == "-"  # unknown (every call unpriced), never a total of 0
    assert "analyze task` takes them" in out


def test_task_json_tree(dataset: Path, prices: Path, capsys) -> None:
    code, out, _ = run(capsys, "task", CHAIN, "--data", str(dataset), "--prices", str(prices), "--format", "json")
    assert code == 0
    doc = json.loads(out)
    assert (doc["task_id"], doc["status"], doc["stitch_state"]) == (CHAIN, "ok", "ok")
    root = doc["root"]
    path = [root, root["children"][0], root["children"][0]["children"][0]]
    assert [(n["agent"], n["depth"], n["trace_id"], len(n["children"])) for n in path] == [
        ("orchestrator", 0, tid(1).hex(), 1),
        ("researcher", 1, tid(2).hex(), 1),
        ("writer", 2, tid(3).hex(), 0),
    ]
    assert [(n["direct"]["llm_calls"], n["direct"]["tool_calls"]) for n in path] == [(1, 0), (1, 1), (1, 0)]
    assert [(n["direct"]["input_tokens"], n["direct"]["output_tokens"]) for n in path] == [
        (100, 10),
        (200, 20),
        (300, 30),
    ]
    assert [(n["inclusive"]["input_tokens"], n["inclusive"]["output_tokens"]) for n in path] == [
        (600, 60),
        (500, 50),
        (300, 30),
    ]
    assert root["inclusive"]["total_cost_usd"] == pytest.approx(600e-6 + 120e-6, rel=1e-12)
    assert root["direct"]["total_cost_usd"] == pytest.approx(100e-6 + 20e-6, rel=1e-12)
    assert doc["inclusive_cost_usd"] == root["inclusive"]["total_cost_usd"]
    assert doc["direct_cost_usd"] == root["direct"]["total_cost_usd"]  # the top trace holds one agent run


def test_task_rich_tree(dataset: Path, capsys) -> None:
    code, out, _ = run(capsys, "task", LEAD.upper(), "--data", str(dataset))
    assert code == 0
    assert out.splitlines()[0] == f"task {LEAD} (ok; stitch state ok): - inclusive, - in its own trace"
    assert out.count("worker") == 5 and "lead depth 0" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["tasks", "--data", "/nonexistent/x"], "error: no dataset at /nonexistent/x"),
        (["task", "zz", "--data", "{data}"], "error: malformed task id 'zz'"),
        (["task", "a" * 33, "--data", "{data}"], "error: malformed task id"),
        (["task", "ab" * 16, "--data", "{data}"], f"error: unknown task id {'ab' * 16}"),
        (["task", "0000000000000000", "--data", "{data}"], "error: ambiguous task id '0000000000000000': it starts"),
        (["task", tid(2).hex(), "--data", "{data}"], f"error: {tid(2).hex()} is not a task id: trace"),
        (["tasks", "--data", "{data}", "--since", "2026-11-02", "--until", "2026-11-01"], "error: --since 2026-11-02"),
        (["tasks", "--data", "{data}", "--since", "yesterday"], "error: bad time 'yesterday'"),
        (["tasks", "--data", "{data}", "--format", "xml"], "error: Invalid value for '--format'"),
        (["task", CHAIN, "--data", "{data}", "--format", "table"], "error: Invalid value for '--format'"),
    ],
)
def test_errors_are_one_line(dataset: Path, capsys, args: list[str], message: str) -> None:
    code, out, err = run(capsys, *[a.replace("{data}", str(dataset)) for a in args])
    assert code == 2 and out == ""
    assert err.startswith(message) and err.count("\n") == 1


def test_real_process_exit_code(dataset: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "analyzer.cli", "task", "00" * 16, "--data", str(dataset)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == f"error: unknown task id {'00' * 16}: no trace of the dataset starts with it\n"


def test_task_whose_top_trace_has_no_agent_run(data_dir: Path, capsys) -> None:
    """A plain service trace delegating to a sub-agent: the root node is the top trace itself."""
    from stitch_scenarios import agent, llm, span

    top = [span(90, 1, name="POST /ask"), llm(90, 2, 1, (5, 5)), span(90, 3, 1, name="delegate")]
    child = [agent(91, 1, name="child", links=[(90, 3)]), llm(91, 2, 1, (3, 3))]
    write_rows(stitch([top, child]), data_dir)
    code, out, _ = run(capsys, "task", tid(90).hex(), "--data", str(data_dir), "--format", "json")
    root = json.loads(out)["root"]
    assert code == 0
    assert (root["agent"], root["span_id"], root["depth"], root["direct"]["llm_calls"]) == (None, None, None, 1)
    assert (root["direct"]["input_tokens"], root["inclusive"]["input_tokens"]) == (5, 8)
    assert [(c["agent"], c["depth"], c["trace_id"]) for c in root["children"]] == [("child", 0, tid(91).hex())]
    code, out, _ = run(capsys, "tasks", "--data", str(data_dir), "--format", "json")
    assert [(r["root_agent"], r["traces"], r["agent_runs"], r["input_tokens"]) for r in json.loads(out)] == [
        ("svc", 2, 1, 8)
    ]


def test_task_tree_too_deep_is_a_clear_error(data_dir: Path, capsys) -> None:
    from stitch_scenarios import agent, span

    traces = [[agent(1, 1, name="a0"), span(1, 2, 1)]]
    traces += [[agent(1 + i, 1, name=f"a{i}", links=[(i, 2)]), span(1 + i, 2, 1)] for i in range(1, 202)]
    write_rows(stitch(traces), data_dir)
    code, out, err = run(capsys, "task", tid(1).hex(), "--data", str(data_dir), "--format", "json")
    assert (code, out) == (2, "")
    assert (
        err
        == f"error: task {tid(1).hex()} nests agent runs 201 deep (over 200): too deep to print as a tree; see `analyze tasks` and the agent_runs view\n"
    )
