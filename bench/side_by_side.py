"""Timing commands side by side: each in a fresh interpreter, alternating, medians, ratios and peak memory.

The machine is noisy (a fixed CPU-bound loop varies 1.5-2x between runs), so every benchmark that compares
an `analyze` command with a bare DuckDB query runs them in turn, several rounds, and reports medians.
Peak memory is the child's own VmHWM (ru_maxrss would carry the parent's high-water mark across fork+exec).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

_PEAK = "print([l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0], file=sys.stderr)"
_CLI = (
    """
import contextlib, io, sys
from analyzer.cli import main
with contextlib.redirect_stdout(io.StringIO()):
    code = main(sys.argv[1:])
"""
    + _PEAK
    + "\nsys.exit(code)\n"
)


def analyze_command(*args: str) -> list[str]:
    """`analyze ARGS` in a fresh interpreter (process start included), output discarded."""
    return [sys.executable, "-c", _CLI, *args]


def python_command(code: str, *args: str) -> list[str]:
    """A Python snippet (a bare DuckDB query) in a fresh interpreter; `sys.argv[1:]` are `args`."""
    return [sys.executable, "-c", code + "\n" + _PEAK, *args]


def timed(args: list[str], timeout_s: float = 1800) -> tuple[float, float]:
    """Run once: (wall seconds, peak MiB)."""
    started = time.perf_counter()
    done = subprocess.run(args, capture_output=True, text=True, timeout=timeout_s)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{args[3:]} failed: {done.stderr.strip()[-500:]}")
    return elapsed, int(done.stderr.strip().splitlines()[-1]) / 1024


def compare(commands: dict[str, list[str]], baseline: str, repeats: int) -> dict[str, dict[str, float]]:
    """Alternate the commands `repeats` times; print and return median seconds, ratio to `baseline`, peak MiB."""
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
    for _ in range(repeats):
        for name, args in commands.items():
            samples[name].append(timed(args))
    base_s = statistics.median(s for s, _ in samples[baseline])
    width = max(len(name) for name in commands) + 2
    print(f"{'command':<{width}} {'seconds':>8} {'x ' + baseline:>{len(baseline) + 2}} {'peak MiB':>9}")
    figures = {}
    for name, values in samples.items():
        seconds = statistics.median(s for s, _ in values)
        peak = max(m for _, m in values)
        figures[name] = {
            "seconds": round(seconds, 3),
            "ratio_to_bare": round(seconds / base_s, 2),
            "peak_mib": round(peak, 1),
        }
        print(f"{name:<{width}} {seconds:>8.2f} {seconds / base_s:>{len(baseline) + 2}.2f} {peak:>9.1f}")
    return figures
