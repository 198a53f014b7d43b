"""The web console on a big dataset: each page's answer time in a running `analyze serve`, side by side with
the CLI command that gives the same figures (a fresh process reading the Parquet, as a user runs it).

A synthetic dataset of 100 k tasks (~2.9 M spans, 310 k traces) plus 40 GPU slices over its 3 days (quick:
10 k tasks; `BENCH_CONSOLE_TASKS` overrides; `BENCH_CONSOLE_DIR` keeps / reuses the dataset). `analyze serve`
runs in its own process on a loopback port; the time until its first page answers (`prepare_s`: the charges
kept), then until a Tasks page answers (`ready_s`: the rest of the preparation a dataset state costs once,
done in the background after the first page). Then, each round, alternating with the CLI command:

- every page with filters not asked before (a window shifted by a minute, another page of tasks, another
  task): the work of a new question (`<page>_s`), and the same URL again (`<page>_again_s`: the memo);
- the CLI command the page names for its main figures, in a fresh interpreter (`<page>_cli_s`).

Medians over `BENCH_CONSOLE_ROUNDS` (default 5, quick 2) and the ratio CLI / page. `analyze report` (what
the overview replaces) runs once beside them.

    python -m bench --only console --quick
"""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

import httpx

from bench.side_by_side import analyze_command, timed

PAGE_TIMEOUT_S = 600.0


def _dataset(root: Path, tasks: int) -> dict:
    from analyzer.gpu_synthetic import synthetic_gpu
    from analyzer.synthetic import generate

    marker = root / f".generated-console-{tasks}"
    if not marker.exists():
        shutil.rmtree(root, ignore_errors=True)
        summary = generate(root, tasks=tasks, seed=1)
        gpu = synthetic_gpu(root, slices=40, days=3, spans=tasks // 2, seed=1)
        marker.write_text(json.dumps({"spans": summary.spans + gpu.spans, "traces": summary.traces}))
    return json.loads(marker.read_text())


def _serve(root: Path) -> tuple[subprocess.Popen, str]:
    server = subprocess.Popen(
        [sys.executable, "-m", "analyzer.cli", "serve", "--data", str(root), "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True,
    )  # fmt: skip
    assert server.stdout is not None
    found = re.match(r"agentmeter console on (http://127\.0\.0\.1:\d+)/ ", server.stdout.readline())
    if not found:
        server.kill()
        raise RuntimeError("analyze serve did not print its URL")
    return server, found.group(1)


def _get(client: httpx.Client, url: str) -> float:
    started = time.perf_counter()
    response = client.get(url, timeout=PAGE_TIMEOUT_S)
    elapsed = time.perf_counter() - started
    if response.status_code != 200:
        raise RuntimeError(f"{url}: HTTP {response.status_code}: {response.text[:300]}")
    return elapsed


def main(quick: bool) -> dict:
    from rich.console import Console
    from rich.table import Table

    tasks = int(os.environ.get("BENCH_CONSOLE_TASKS", 10_000 if quick else 100_000))
    rounds = int(os.environ.get("BENCH_CONSOLE_ROUNDS", 2 if quick else 5))
    keep = os.environ.get("BENCH_CONSOLE_DIR")
    figures: dict = {"tasks": tasks, "rounds": rounds}
    with tempfile.TemporaryDirectory(prefix="bench-console-") as tmp:
        root = Path(keep) if keep else Path(tmp) / "data"
        figures.update(_dataset(root, tasks))
        data = str(root)
        listing = subprocess.run(
            [sys.executable, "-m", "analyzer.cli", "tasks", "--top", str(rounds), "--format", "json", "--data", data],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        picked = [row["task_id"] for row in json.loads(listing.stdout)]
        newest = datetime(2026, 11, 5, tzinfo=None)  # the synthetic data's last day (analyzer.synthetic: 3 days)
        server, base = _serve(root)
        samples: dict[str, list[float]] = {}
        try:
            with httpx.Client() as client:
                started = time.perf_counter()
                _get(client, base + "/?range=all")
                figures["prepare_s"] = round(time.perf_counter() - started, 2)
                # the rest of the preparation goes on in the background after the first page (analyzer/snapshot.py);
                # a Tasks page waits for it: from then on every page is in its steady state, which the rounds time
                _get(client, base + "/tasks?range=all")
                figures["ready_s"] = round(time.perf_counter() - started, 2)
                for n in range(rounds):
                    since = (newest - timedelta(days=2, minutes=n + 1)).strftime("%Y-%m-%dT%H:%M:%SZ")
                    task = picked[n % len(picked)]
                    pages = {
                        "overview": (f"/?since={since}&by=agent", ["cost", "--by", "agent", "--since", since]),
                        "tasks": (
                            f"/tasks?range=all&page={n + 2}",
                            ["tasks", "--sort", "start", "--desc", "--top", "50", "--offset", str((n + 1) * 50)],
                        ),
                        "task": (f"/tasks/{task}", ["task", task, "--calls"]),
                        "agents": (f"/agents?since={since}", ["tasks", "--by", "agent", "--since", since]),
                        "gpu": (f"/gpu?since={since}", ["gpu", "--by", "slice", "--since", since]),
                        "prices": (f"/prices?since={since}", ["prices", "--since", since]),
                    }
                    for name, (path, cli) in pages.items():
                        samples.setdefault(name, []).append(_get(client, base + path))
                        samples.setdefault(f"{name}_again", []).append(_get(client, base + path))
                        seconds, _ = timed(analyze_command(*cli, "--data", data, "--format", "json"))
                        samples.setdefault(f"{name}_cli", []).append(seconds)
        finally:
            server.terminate()
            server.wait(timeout=60)
        report_s, _ = timed(analyze_command("report", "--data", data, "--out", str(Path(tmp) / "report.html")))
        figures["report_cli_s"] = round(report_s, 2)
    for name, values in samples.items():
        figures[f"{name}_s"] = round(statistics.median(values), 3)
    for name in ("overview", "tasks", "task", "agents", "gpu", "prices"):
        figures[f"{name}_cli_vs_page"] = round(figures[f"{name}_cli_s"] / figures[f"{name}_s"], 1)
    figures["slowest_page_s"] = max(figures[f"{n}_s"] for n in ("overview", "tasks", "task", "agents", "gpu", "prices"))
    table = Table(title=f"console pages at {tasks:,} tasks ({'quick' if quick else 'full'}; medians of {rounds})")
    for column in ("page", "new question s", "same URL again s", "CLI (fresh process) s", "CLI / page"):
        table.add_column(column, justify="left" if column == "page" else "right")
    for name in ("overview", "tasks", "task", "agents", "gpu", "prices"):
        table.add_row(name, str(figures[f"{name}_s"]), str(figures[f"{name}_again_s"]), str(figures[f"{name}_cli_s"]),
                      str(figures[f"{name}_cli_vs_page"]))  # fmt: skip
    Console().print(table)
    print(
        f"first page after start-up {figures['prepare_s']} s, every page prepared {figures['ready_s']} s; "
        f"analyze report {figures['report_cli_s']} s"
    )
    return figures
