"""`python -m bench [--quick] [--only NAME ...] [--out FILE]`: run every benchmark, one after another.

Each `bench/bench_<name>.py` exposes `main(quick: bool) -> dict`: it prints its own table and returns its
figures. This runner finds the ones that exist (others are still being written) and runs each in its own
process, one after another (they share 2 cores: never in parallel), under a time limit, so one that hangs or
fails does not stop the others, and its peak memory is its own. Every figure goes to `bench-results.json`
with the machine it ran on. Quick mode is a smoke run (small sizes); `make bench` runs the full mode.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent


def discover() -> list[str]:
    """Names of the benchmarks present: bench_ingest.py -> 'ingest'."""
    return sorted(path.stem.removeprefix("bench_") for path in BENCH_DIR.glob("bench_*.py"))


def run_in_this_process(name: str, quick: bool, result_file: Path) -> int:
    """The child side: import one benchmark, run it, write its figures as JSON."""
    figures = importlib.import_module(f"bench.bench_{name}").main(quick)
    if not isinstance(figures, dict):
        raise TypeError(f"bench_{name}.main() returned {type(figures).__name__}, not dict")
    result_file.write_text(json.dumps(figures, default=str))
    return 0


def run_one(name: str, quick: bool, timeout_s: float) -> dict[str, Any]:
    """Run one benchmark in a child process (its own session, so a timeout stops everything it started)."""
    with tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as tmp:
        result_file = Path(tmp) / "figures.json"
        command = [sys.executable, "-m", "bench", "--run-one", name, "--result-file", str(result_file)]
        started = time.monotonic()
        child = subprocess.Popen([*command, *(["--quick"] if quick else [])], cwd=ROOT, start_new_session=True)
        status = "ok"
        try:
            _, wait_status, usage = _wait(child, timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)  # the child's own process group: it and what it started
            _, wait_status, usage = os.wait4(child.pid, 0)
            status = f"timeout after {timeout_s:.0f} s"
        seconds = round(time.monotonic() - started, 3)
        exit_code = os.waitstatus_to_exitcode(wait_status)
        child.returncode = exit_code
        if status == "ok" and exit_code != 0:
            status = f"failed (exit {exit_code})"
        outcome: dict[str, Any] = {"status": status, "seconds": seconds, "peak_rss_mib": usage.ru_maxrss // 1024}
        if status == "ok":
            outcome["figures"] = json.loads(result_file.read_text())
        return outcome


def _wait(child: subprocess.Popen, timeout_s: float) -> tuple[int, int, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        pid, wait_status, usage = os.wait4(child.pid, os.WNOHANG)
        if pid:
            return pid, wait_status, usage
        if time.monotonic() > deadline:
            raise subprocess.TimeoutExpired(child.args, timeout_s)
        time.sleep(0.05)


def machine() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "MALLOC_MMAP_THRESHOLD_": os.environ.get("MALLOC_MMAP_THRESHOLD_"),
        "MALLOC_TRIM_THRESHOLD_": os.environ.get("MALLOC_TRIM_THRESHOLD_"),
    }


def print_summary(results: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="benchmarks")
    for column in ("benchmark", "status", "seconds", "peak RSS MiB"):
        table.add_column(column, justify="left" if column in ("benchmark", "status") else "right")
    for name, outcome in results.items():
        table.add_row(name, outcome["status"], f"{outcome['seconds']:.1f}", str(outcome["peak_rss_mib"]))
    Console().print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run of every benchmark")
    parser.add_argument("--only", action="append", metavar="NAME", help="run only this benchmark (repeatable)")
    parser.add_argument("--out", type=Path, default=Path("bench-results.json"), help="where the figures go")
    parser.add_argument("--timeout", type=float, help="seconds per benchmark (default 900, quick 180)")
    parser.add_argument("--list", action="store_true", help="list the benchmarks present and exit")
    parser.add_argument("--run-one", help=argparse.SUPPRESS)  # internal: the child process
    parser.add_argument("--result-file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.run_one:
        return run_in_this_process(args.run_one, args.quick, args.result_file)
    names = discover()
    if args.list:
        print("\n".join(names))
        return 0
    if args.only:
        unknown = sorted(set(args.only) - set(names))
        if unknown:
            present = ", ".join(names) or "none"
            print(f"error: no benchmark named {', '.join(unknown)} (present: {present})", file=sys.stderr)
            return 2
        names = [n for n in names if n in args.only]
    if not names:
        print("no bench/bench_*.py present yet: nothing to run")
    timeout_s = args.timeout or (180.0 if args.quick else 900.0)

    results: dict[str, Any] = {}
    for name in names:
        print(f"\n=== bench {name} ({'quick' if args.quick else 'full'}) ===", flush=True)
        results[name] = run_one(name, args.quick, timeout_s)
        print(f"--- {name}: {results[name]['status']} in {results[name]['seconds']:.1f} s", flush=True)

    document = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "mode": "quick" if args.quick else "full",
        "machine": machine(),
        "benchmarks": results,
    }
    args.out.write_text(json.dumps(document, indent=2, default=str) + "\n")
    if results:
        print()
        print_summary(results)
    failed = [name for name, outcome in results.items() if outcome["status"] != "ok"]
    print(f"{len(results) - len(failed)}/{len(results)} benchmarks ok; figures in {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
