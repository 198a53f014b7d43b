"""The receiver's memory footprint as PSS: the receiver process, its forkserver and its decode processes.

PSS (proportional set size, psutil `memory_full_info().pss`) divides each shared page among the processes
that map it, so the sum over the process tree is what the tree costs the machine (RSS would count the pages
the decode processes share with their forkserver once per process). `collector-ext serve` starts with its
defaults (decode processes: one per usable CPU, at most 4) on loopback; measured:

- idle: after start, before any request (what a quiet sidecar costs);
- after traffic: after BENCH_FOOTPRINT_REQUESTS requests of 1000 spans (bench_ingest's) were acknowledged
  and written (the spans written: what stays after a burst).

    python -m bench --only footprint [--quick]

BENCH_FOOTPRINT_BASELINE=DIR (default: BENCH_INGEST_BASELINE) names an older source tree whose receiver is
measured too, alternating with this one, rounds x 2; medians and ratios.
"""

from __future__ import annotations

import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import psutil

from bench.bench_ingest import MALLOC_ENV, SPANS_PER_REQUEST, _http_ok, _wait_ready, make_requests
from bench.load_client import write_requests
from collector_ext.config import free_loopback_port

ROOT = Path(__file__).resolve().parent.parent
MIB = 1024 * 1024
SETTLE_S = 2.0  # after start or a burst: let the interpreter and the allocator settle before reading PSS
WRITTEN_TIMEOUT_S = 120.0


def pss_tree(pid: int) -> dict[str, float]:
    """PSS in MiB of the receiver, its forkserver and its decode processes (and anything else it started)."""
    receiver = psutil.Process(pid)
    figures = {"receiver": receiver.memory_full_info().pss / MIB, "forkserver": 0.0, "decode": 0.0, "other": 0.0}
    decode_processes = 0
    for child in receiver.children(recursive=True):
        try:
            pss = child.memory_full_info().pss / MIB
            cmdline = " ".join(child.cmdline())
            parent = child.ppid()
        except psutil.NoSuchProcess:
            continue
        if "forkserver" in cmdline and parent == pid:
            figures["forkserver"] += pss
        elif parent != pid and "forkserver" in " ".join(psutil.Process(parent).cmdline()):
            figures["decode"] += pss  # forked by the forkserver
            decode_processes += 1
        else:
            figures["other"] += pss  # e.g. multiprocessing's resource tracker
    figures["total"] = sum(figures.values())
    figures["decode_processes"] = decode_processes
    return figures


def _spans_written(http_port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=5) as response:
        text = response.read().decode()
    match = re.search(r"^agentmeter_spans_written_total (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def measure(source: Path, requests_file: Path, count: int, work: Path) -> dict:
    grpc_port, http_port = free_loopback_port(), free_loopback_port()
    data_dir = work / f"data-{grpc_port}"
    command = [
        sys.executable, "-m", "collector_ext.cli", "serve",
        "--data-dir", str(data_dir), "--writer-id", "bench",
        "--grpc-endpoint", f"127.0.0.1:{grpc_port}", "--http-endpoint", f"127.0.0.1:{http_port}",
        "--scaler-endpoint", "", "--podresources-interval-seconds", "0",
        "--trace-grace-seconds", "0.5", "--parquet-max-seconds", "1", "--log-level", "warning",
    ]  # fmt: skip
    env = {**os.environ, **MALLOC_ENV}
    process = subprocess.Popen(command, cwd=source, env=env, stdout=subprocess.DEVNULL)
    try:
        _wait_ready(lambda: _http_ok(f"http://127.0.0.1:{http_port}/healthz"), process)
        time.sleep(SETTLE_S)
        idle = pss_tree(process.pid)
        client = [
            sys.executable, "-m", "bench.load_client", "--endpoint", f"127.0.0.1:{grpc_port}",
            "--requests", str(requests_file), "--streams", "4", "--max-requests", str(count), "--max-seconds", "120",
        ]  # fmt: skip
        subprocess.run(client, cwd=ROOT, capture_output=True, check=True, timeout=300)
        deadline = time.monotonic() + WRITTEN_TIMEOUT_S
        while _spans_written(http_port) < count * SPANS_PER_REQUEST and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(SETTLE_S)
        after = pss_tree(process.pid)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(120)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
    return {"idle": idle, "after_traffic": after}


def main(quick: bool) -> dict:
    count = int(os.environ.get("BENCH_FOOTPRINT_REQUESTS", 10 if quick else 60))
    rounds = 1 if quick else 3
    baseline = os.environ.get("BENCH_FOOTPRINT_BASELINE") or os.environ.get("BENCH_INGEST_BASELINE")
    sources = {**({"baseline": Path(baseline).resolve()} if baseline else {}), "receiver": ROOT}
    runs: dict[str, list[dict]] = {kind: [] for kind in sources}
    with tempfile.TemporaryDirectory(prefix="bench-footprint-") as tmp:
        work = Path(tmp)
        requests_file = work / "requests.bin"
        write_requests(requests_file, make_requests(count))
        for _ in range(rounds):
            for kind, source in sources.items():
                runs[kind].append(measure(source, requests_file, count, work))
    table: dict[str, dict] = {}
    for kind, measured in runs.items():
        table[kind] = {
            phase: {key: statistics.median(run[phase][key] for run in measured) for key in measured[0][phase]}
            for phase in ("idle", "after_traffic")
        }
    print(f"\nfootprint (PSS, MiB; medians of {rounds}): receiver + forkserver + decode processes")
    print(f"{'':22}{'receiver':>10}{'forkserver':>12}{'decode':>10}{'(n)':>5}{'other':>8}{'total':>9}")
    for kind, phases in table.items():
        for phase, row in phases.items():
            print(
                f"{kind + ' ' + phase:22}{row['receiver']:>10.1f}{row['forkserver']:>12.1f}{row['decode']:>10.1f}"
                f"{row['decode_processes']:>5.0f}{row['other']:>8.1f}{row['total']:>9.1f}"
            )
    if "baseline" in table:
        for phase in ("idle", "after_traffic"):
            ratio = table["receiver"][phase]["total"] / table["baseline"][phase]["total"]
            print(f"total PSS {phase}: receiver / baseline = {ratio:.2f}")
    return {"requests": count, "rounds": rounds, "pss_mib": table, "runs": runs}


if __name__ == "__main__":
    main("--quick" in sys.argv)
