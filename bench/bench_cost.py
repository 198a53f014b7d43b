"""`analyze cost --by agent` (the real CLI, a subprocess, process start included) against a bare DuckDB
scan-join-group-by of the same columns over the same synthetic dataset: side by side, alternating, medians.

Full: ~10 M spans (350 k tasks, ~1 M traces, 500 agents, 50 models); quick: ~1 M spans.
Env: AGENTMETER_BENCH_COST_TASKS (tasks to generate), AGENTMETER_BENCH_COST_ROUNDS, AGENTMETER_BENCH_COST_DIR
(keep/reuse the generated dataset there; default a temporary directory, removed afterwards),
AGENTMETER_BENCH_COST_BASELINE (another checkout, e.g. `git worktree` of an older commit: its CLI runs too,
alternating with ours, for a before/after in one run), AGENTMETER_BENCH_COST_COPIES=1 (then the CLI again with
one spans file delivered twice: the copies the `spans` view leaves out).

In-process it also times `open_dataset` with a cold and a warm cache of span ids and the cold pass alone
(rows unique by (trace_id, span_id): analyzer/span_copies.py reads each file's span ids once). The CLI runs
use the default cache: the first round fills it (the new files of a live dataset are read on each run).

The goal (issue 4) compares like with like: the CLI's wall time against the bare query's process wall time
(process start, imports and the price table on both sides): `ratio_cli_to_bare_process`, goal 1.5x.

The bare query joins the same price table (built once, untimed) and counts the usage the receiver marked
(`usage_counted`); the CLI applies the analyzer's dataset-wide exactly-once rule (`counted_spans`), so its
time is also broken down: `counted_calls` (what span_costs reads) alone, measured in-process.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

BARE_SQL = """
SELECT s.agent_name AS agent, count(*) AS llm_calls, sum(s.input_tokens) AS input_tokens,
       sum(s.output_tokens) AS output_tokens, sum(s.cache_read_tokens) AS cache_read_tokens,
       sum(s.cache_write_tokens) AS cache_write_tokens, sum(s.reasoning_tokens) AS reasoning_tokens,
       sum(coalesce(s.input_tokens, 0) * p.c_input + coalesce(s.output_tokens, 0) * p.c_output
           + coalesce(s.cache_read_tokens, 0) * p.c_cache_read + coalesce(s.cache_write_tokens, 0) * p.c_cache_write
           + coalesce(s.reasoning_tokens, 0) * p.c_reasoning + p.c_request) AS cost_usd,
       count(*) FILTER (WHERE p.source IS NULL) AS unpriced_calls
FROM read_parquet($files, hive_partitioning = true) AS s
LEFT JOIN price_rows AS p
  ON p.provider = coalesce(s.provider, '') AND p.model = coalesce(s.response_model, s.request_model)
 AND (p.valid_from IS NULL OR s.start_time >= p.valid_from) AND (p.valid_to IS NULL OR s.start_time < p.valid_to)
 AND (epoch_ns(s.start_time) // 1000) % 86400000000 >= p.tod_from_us
 AND (epoch_ns(s.start_time) // 1000) % 86400000000 < p.tod_to_us
 AND coalesce(s.input_tokens, 0) > p.input_gt AND (p.input_le IS NULL OR coalesce(s.input_tokens, 0) <= p.input_le)
WHERE s.usage_counted
GROUP BY ALL
ORDER BY cost_usd DESC NULLS LAST, agent
"""


def bare(root: Path) -> None:
    """Child process: build the price table (untimed), then time the bare query; prints JSON."""
    import duckdb

    from analyzer.pricing import build_price_table

    con = duckdb.connect()
    files = str(root / "spans" / "date=*" / "*.parquet")
    pairs = con.execute(
        "SELECT DISTINCT coalesce(provider, ''), coalesce(response_model, request_model) FROM read_parquet($f) "
        "WHERE usage_counted AND coalesce(response_model, request_model) IS NOT NULL",
        {"f": files},
    ).fetchall()
    con.register("price_arrow", build_price_table(pairs).arrow())
    con.execute("CREATE TABLE price_rows AS SELECT * FROM price_arrow")
    started = time.perf_counter()
    rows = con.execute(BARE_SQL, {"files": files}).fetchall()
    seconds = time.perf_counter() - started
    total = sum(float(r[7] or 0) for r in rows)
    print(json.dumps({"seconds": seconds, "groups": len(rows), "total_cost": total}))


def _peak(args: list[str], cwd: Path = ROOT) -> tuple[float, int, str]:
    """Wall seconds, the child's own peak RSS (MiB, from wait4) and its stdout."""
    started = time.perf_counter()
    child = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=cwd)
    out = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:5])} exited {child.returncode}")
    return seconds, usage.ru_maxrss // 1024, out


def _open_seconds(root: Path) -> tuple[float, float, float]:
    """In-process seconds: open_dataset with a cold cache of span ids (every file read: the pass that finds
    copies of spans, analyzer/span_copies.py), open_dataset warm (nothing read), and the cold pass alone."""
    from analyzer import span_copies
    from analyzer.dataset import open_dataset

    previous = os.environ.get("AGENTMETER_CACHE_DIR")
    with tempfile.TemporaryDirectory(prefix="bench-cost-cache-") as cache:
        os.environ["AGENTMETER_CACHE_DIR"] = cache
        try:
            started = time.perf_counter()
            con = open_dataset(root).con
            cold = time.perf_counter() - started
            started = time.perf_counter()
            open_dataset(root)
            warm = time.perf_counter() - started
            files = sorted((root / "spans").glob("date=*/*.parquet"))
            for stale in Path(cache).glob("agentmeter/*.npz"):
                stale.unlink()
            started = time.perf_counter()
            span_copies.span_copies(con, root, files, exact=lambda repeated: span_copies.Copies.none())
            alone = time.perf_counter() - started
        finally:
            if previous is None:
                os.environ.pop("AGENTMETER_CACHE_DIR", None)
            else:
                os.environ["AGENTMETER_CACHE_DIR"] = previous
    return cold, warm, alone


def _with_copies(root: Path, cli_args: list[str], rounds: int, cost_once: float) -> dict:
    """The CLI again with one spans file delivered twice (a copy under another writer's name): the rows it
    holds are in the dataset twice, so the `spans` view leaves them out. Same total cost, what time?"""
    original = min((root / "spans").glob("date=*/*.parquet"), key=lambda p: p.stat().st_size)
    copy = original.with_name("copy-" + original.name)
    shutil.copyfile(original, copy)
    try:
        seconds, costs = [], set()
        for _ in range(rounds):
            elapsed, _, out = _peak(cli_args)
            seconds.append(elapsed)
            costs.add(round(sum(r["cost_usd"] or 0 for r in json.loads(out)), 6))
        from analyzer.dataset import open_dataset

        copies = open_dataset(root).duplicate_span_rows
    finally:
        copy.unlink()
    return {
        "copies_rows": copies,
        "cli_with_copies_median_s": statistics.median(seconds),
        "cli_with_copies_same_total_cost": costs == {cost_once},
    }


def _counted_seconds(root: Path) -> float:
    from analyzer.dataset import open_dataset

    con = open_dataset(root).con
    con.execute("SET enable_progress_bar = false")
    started = time.perf_counter()
    # what span_costs reads (a bare count(*) would make DuckDB read every column through the UNION ALL)
    con.execute("SELECT count(*), sum(input_tokens) FROM counted_calls").fetchone()
    return time.perf_counter() - started


def generate_dataset(root: Path, tasks: int) -> None:
    from analyzer.synthetic import generate

    summary = generate(root, tasks=tasks, seed=1, agents=500, models=50)
    (root / f".generated-{tasks}").write_text(json.dumps({"spans": summary.spans, "traces": summary.traces}))


def main(quick: bool) -> dict:
    tasks = int(os.environ.get("AGENTMETER_BENCH_COST_TASKS") or (35_000 if quick else 350_000))
    rounds = int(os.environ.get("AGENTMETER_BENCH_COST_ROUNDS") or (3 if quick else 5))
    keep = os.environ.get("AGENTMETER_BENCH_COST_DIR")
    root = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="bench-cost-"))
    marker = root / f".generated-{tasks}"
    try:
        if not marker.exists():  # generated in a child: this process stays small, so wait4's peaks are the children's
            shutil.rmtree(root, ignore_errors=True)
            started = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "bench.bench_cost", "--generate", str(root), str(tasks)], check=True, cwd=ROOT
            )
            print(f"generated {marker.read_text()} in {time.perf_counter() - started:.1f} s")
        sizes = json.loads(marker.read_text())
        cli_args = [
            sys.executable,
            "-m",
            "analyzer.cli",
            "cost",
            "--data",
            str(root),
            "--by",
            "agent",
            "--format",
            "json",
        ]
        bare_args = [sys.executable, "-m", "bench.bench_cost", "--bare", str(root)]
        baseline = os.environ.get("AGENTMETER_BENCH_COST_BASELINE")
        cli_s, bare_s, bare_wall_s, base_s, cli_mem, bare_mem, base_mem = [], [], [], [], 0, 0, 0
        answers = {}
        for _ in range(rounds):  # alternating, so machine noise hits both alike
            if baseline:
                seconds, mem, out = _peak(cli_args, cwd=Path(baseline))
                base_s.append(seconds)
                base_mem = max(base_mem, mem)
                answers["baseline"] = round(sum(r["cost_usd"] or 0 for r in json.loads(out)), 6)
            seconds, mem, out = _peak(bare_args)
            figures = json.loads(out)
            bare_s.append(figures["seconds"])
            bare_wall_s.append(seconds)
            bare_mem = max(bare_mem, mem)
            answers["bare"] = round(figures["total_cost"], 6)
            seconds, mem, out = _peak(cli_args)
            cli_s.append(seconds)
            cli_mem = max(cli_mem, mem)
            answers["cli"] = round(sum(r["cost_usd"] or 0 for r in json.loads(out)), 6)
        counted_s = _counted_seconds(root)
        open_cold_s, open_warm_s, copies_s = _open_seconds(root)
        result = {
            "spans": sizes["spans"],
            "traces": sizes["traces"],
            "rounds": rounds,
            "cli_median_s": statistics.median(cli_s),
            "bare_query_median_s": statistics.median(bare_s),
            "bare_process_median_s": statistics.median(bare_wall_s),
            "ratio_cli_to_bare_query": statistics.median(cli_s) / statistics.median(bare_s),
            "ratio_cli_to_bare_process": statistics.median(cli_s) / statistics.median(bare_wall_s),
            "cli_peak_mib": cli_mem,
            "bare_peak_mib": bare_mem,
            "counted_spans_alone_s": counted_s,
            "open_dataset_cold_cache_s": open_cold_s,
            "open_dataset_warm_cache_s": open_warm_s,
            "span_copies_cold_pass_s": copies_s,
            "same_total_cost": answers["bare"] == answers["cli"],
            "cli_runs_s": cli_s,
            "bare_query_runs_s": bare_s,
            "bare_process_runs_s": bare_wall_s,
        }
        if baseline:
            result.update(
                baseline_median_s=statistics.median(base_s),
                baseline_peak_mib=base_mem,
                baseline_runs_s=base_s,
                ratio_baseline_to_bare_process=statistics.median(base_s) / statistics.median(bare_wall_s),
                baseline_same_total_cost=answers["baseline"] == answers["cli"],
                ratio_cli_to_baseline=statistics.median(cli_s) / statistics.median(base_s),
            )
        if os.environ.get("AGENTMETER_BENCH_COST_COPIES"):
            result.update(_with_copies(root, cli_args, rounds, answers["cli"]))
    finally:
        if not keep:
            shutil.rmtree(root, ignore_errors=True)
    print(f"{'':32}{'median s':>10}{'peak MiB':>10}")
    print(f"{'analyze cost --by agent (CLI)':32}{result['cli_median_s']:>10.3f}{cli_mem:>10}")
    print(f"{'bare scan-join-group-by query':32}{result['bare_query_median_s']:>10.3f}{bare_mem:>10}")
    print(f"{'  (bare incl. process start)':32}{result['bare_process_median_s']:>10.3f}")
    if "baseline_median_s" in result:
        print(f"{'baseline CLI (before)':32}{result['baseline_median_s']:>10.3f}{result['baseline_peak_mib']:>10}")
    print(f"{'counted_calls alone (in CLI)':32}{counted_s:>10.3f}")
    print(f"{'open_dataset, cold span-id cache':32}{open_cold_s:>10.3f}")
    print(f"{'open_dataset, warm span-id cache':32}{open_warm_s:>10.3f}")
    print(f"{'  the cold span copies pass':32}{copies_s:>10.3f}")
    print(
        f"ratio CLI / bare process: {result['ratio_cli_to_bare_process']:.2f}x (goal 1.5x); "
        f"CLI / bare query alone: {result['ratio_cli_to_bare_query']:.2f}x; same total: {result['same_total_cost']}"
    )
    return result


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--bare":
        bare(Path(sys.argv[2]))
    elif len(sys.argv) == 4 and sys.argv[1] == "--generate":
        generate_dataset(Path(sys.argv[2]), int(sys.argv[3]))
    else:
        print(json.dumps(main(quick="--quick" in sys.argv), indent=2))
