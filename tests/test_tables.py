"""Tables people can read: whole ids and money at 100 columns and when piped (columns left out, and named,
rather than cut), an empty result says why, an inverted time range is refused, money reads as money."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import pytest

from analyzer.analysis import Analysis
from analyzer.cli import main
from analyzer.output import money
from analyzer.synthetic import generate
from analyzer.task_queries import LIST_COLUMNS, TaskQuery, list_tasks


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tables") / "data"
    generate(root, tasks=40, seed=4)
    return root


def in_a_terminal(columns: int, *args: str) -> str:
    """`analyze ...` with a real pseudo-terminal of `columns` columns as its stdout."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: a terminal of that width
        os.environ.update(COLUMNS=str(columns), LINES="50", TERM="dumb", NO_COLOR="1")
        os.execv(sys.executable, [sys.executable, "-m", "analyzer.cli", *args])
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return re.sub(r"\x1b\[[0-9;]*m", "", b"".join(chunks).decode().replace("\r\n", "\n"))


def test_tasks_at_100_columns_keep_ids_and_money_whole(dataset: Path) -> None:
    out = in_a_terminal(100, "tasks", "--data", str(dataset), "--top", "5")
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= 100 and "…" not in out
    tasks = list_tasks(Analysis.open(dataset), TaskQuery(sort="cost", limit=5))
    rows = [line for line in lines if line.startswith("│") and "total" not in line]
    assert len(rows) == 5
    for task, row in zip(tasks, rows, strict=True):
        cells = [c.strip() for c in row.split("│")[1:-1]]
        assert cells[0] == task["task_id"][:16] and money(task["inclusive_cost_usd"]) in cells
    flat = " ".join(out.split())
    assert "not shown at this width:" in flat and "(--format csv or json has every column)" in flat
    # the short id is enough for `analyze task`
    assert main(["task", tasks[0]["task_id"][:16], "--data", str(dataset), "--format", "json"]) == 0


def test_cost_at_100_columns_and_piped(dataset: Path) -> None:
    narrow = in_a_terminal(100, "cost", "--by", "agent", "--data", str(dataset))
    assert max(len(line) for line in narrow.splitlines()) <= 100 and "…" not in narrow
    assert "total_cost_usd" in narrow and "llm_calls" in narrow
    piped = subprocess.run(
        [sys.executable, "-m", "analyzer.cli", "cost", "--by", "agent", "--data", str(dataset)],
        capture_output=True, text=True, timeout=60, env={**os.environ, "COLUMNS": "80"},
    ).stdout  # fmt: skip
    header = next(line for line in piped.splitlines() if line.startswith("┃"))
    assert "…" not in piped and [c.strip() for c in header.split("┃")[1:-1]][-1] == "reported_cost_usd"


def test_piped_tasks_show_every_column(dataset: Path) -> None:
    piped = subprocess.run(
        [sys.executable, "-m", "analyzer.cli", "tasks", "--data", str(dataset)],
        capture_output=True, text=True, timeout=60,
    ).stdout  # fmt: skip
    header = next(line for line in piped.splitlines() if line.startswith("┃"))
    assert [c.strip() for c in header.split("┃")[1:-1]] == list(LIST_COLUMNS) and "…" not in piped


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["cost", "--by", "agent", "--since", "2020-01-01", "--until", "2020-02-01"],
         "no LLM calls between 2020-01-01T00:00:00Z and 2020-02-01T00:00:00Z; the dataset's spans start 2026-11-04 08:56 UTC"),
        (["cost", "--by", "agent", "--where", "agent=nobody"], "no LLM calls with agent=nobody; the dataset's spans start"),
        (["tasks", "--agent", "nobody"], "no tasks with agent=nobody; the dataset's spans start 2026-11-04 08:56 UTC"),
        (["tasks", "--since", "2030-01-01", "--format", "json"], "no tasks since 2030-01-01T00:00:00Z; the dataset's"),
    ],
)  # fmt: skip
def test_an_empty_result_says_why(dataset: Path, capsys, args: list[str], said: str) -> None:
    assert main([*args, "--data", str(dataset)]) == 0
    out, err = capsys.readouterr()
    assert err.startswith(said)
    assert "┃" not in out  # no empty table


def test_an_empty_dataset_says_so(data_dir: Path, capsys) -> None:
    (data_dir / "spans").mkdir()
    assert main(["cost", "--by", "agent", "--data", str(data_dir)]) == 0
    assert capsys.readouterr().err.startswith(f"no spans in the dataset at {data_dir} yet")


@pytest.mark.parametrize(
    "command", [["cost", "--by", "agent"], ["tasks"], ["gpu"], ["idle"], ["recommend", "--agent", "x"]]
)
def test_since_after_until_is_refused(dataset: Path, capsys, command: list[str]) -> None:
    code = main([*command, "--data", str(dataset), "--since", "2026-11-03", "--until", "2026-11-02"])
    err = capsys.readouterr().err
    assert code == 2 and err == (
        "error: --since 2026-11-03T00:00:00Z is not before --until 2026-11-02T00:00:00Z: nothing can match\n"
    )


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (0, "$0"),
        (0.0713, "$0.0713"),
        (0.008, "$0.0080"),
        (0.000138, "$0.00014"),
        (12.3, "$12.30"),
        (1234.5, "$1,234.50"),
        (4.1e-05, "$0.000041"),
        (-3e-05, "-$0.000030"),
    ],
)
def test_money_reads_as_money(value: float, shown: str) -> None:
    assert money(value) == shown


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["cost", "--by", "agent", "--top", str(10**24)], "error: --top must be between 1 and 1,000,000,000\n"),
        (["tasks", "--offset", str(10**11)], "error: --offset must be between 0 and 1,000,000,000\n"),
        (["tasks", "--by", "agent", "--top", "3"], "error: --by summarises every task of the time range: drop --agent, --status, --top, --offset, --sort, "
         "--desc/--asc, --min-cost, --min-depth\n"),
    ],
)  # fmt: skip
def test_odd_numbers_are_one_line_errors(dataset: Path, capsys, args: list[str], said: str) -> None:
    assert main([*args, "--data", str(dataset)]) == 2
    assert capsys.readouterr().err == said
