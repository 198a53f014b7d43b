"""`make demo` end to end: a real receiver, fake kubelet, workload, Parquet and analyzer; a short workload.

The demo itself checks the dataset against the workload's expected totals (exit 1 on a mismatch); this
test also re-reads the dataset through `analyze cost --format json`, checks the processes it started are
gone, and that Ctrl-C stops everything.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from collector_ext.demo.fake_kubelet import demo_cluster
from collector_ext.demo.loadgen import AGENTS, GPU_SLICES
from collector_ext.demo.run import TRY_NEXT

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def _demo(data_dir: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "collector_ext.demo", "--data-dir", str(data_dir), *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "250"},
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is not running: its parent (the demo) has exited and it is reaped by init shortly
    status = Path(f"/proc/{pid}/status")
    return status.exists() and "zombie" not in status.read_text()


def test_demo_end_to_end(tmp_path):
    data_dir = tmp_path / "demo-data"
    demo = _demo(data_dir, "--tasks", "8", "--seed", "3")
    stdout, stderr = demo.communicate(timeout=120)
    assert demo.returncode == 0, stdout + stderr
    assert "dataset check: every span, LLM call and token sent is in the Parquet, counted once" in stdout

    # the dataset: schema file, Parquet spans, GPU allocations from the fake kubelet's DRA claims
    assert json.loads((data_dir / "_schema.json").read_text())["schema_version"]
    assert list((data_dir / "spans").glob("date=*/demo-*.parquet"))
    assert list((data_dir / "gpu_allocations").glob("date=*/*.parquet"))
    expected = json.loads((data_dir / "expected.json").read_text())
    assert expected["tasks"] == 8 + 4  # history + the live burst

    # the cost table shows every agent that ran, and its JSON twin holds exactly the tokens sent
    cost_table = stdout.split("analyze cost --by agent", 1)[1]
    for agent in expected["agents"]:
        assert agent in cost_table
    done = subprocess.run(
        [sys.executable, "-m", "analyzer.cli", "cost", "--by", "agent", "--format", "json", "--data", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    by_agent = {row["agent"]: row for row in json.loads(done.stdout)}
    assert {name: (r["llm_calls"], r["input_tokens"], r["output_tokens"]) for name, r in by_agent.items()} == {
        name: (u["llm_calls"], u["input_tokens"], u["output_tokens"]) for name, u in expected["agents"].items()
    }
    # the self-hosted model has no token price: its calls are priced by GPU time where they ran on a busy
    # slice, and every other call of it is reported as unpriced, never as zero cost
    self_hosted = by_agent["ticket-classifier"]
    assert self_hosted["cost_usd"] is None and self_hosted["gpu_cost_usd"] > 0
    assert 0 < self_hosted["unpriced_calls"] < self_hosted["llm_calls"]

    report = data_dir / "report.html"
    assert report.stat().st_size > 10_000 and "plotly" in report.read_text()
    assert f"report:   {report.resolve()}" in stdout
    assert "FAILED" not in stdout

    # everything the demo started is stopped
    (pid,) = re.findall(r"receiver pid (\d+)", stdout)
    assert not _alive(int(pid))
    # every command the demo suggests works on the demo's dataset
    assert "try next:" in stdout
    for args in TRY_NEXT:
        assert f"analyze {args[0]} --data {data_dir} {' '.join(args[1:])}" in stdout
        done = subprocess.run(
            [sys.executable, "-m", "analyzer.cli", *args, "--data", str(data_dir)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, f"analyze {' '.join(args)}: {done.stderr}"


def test_ctrl_c_stops_everything(tmp_path):
    demo = _demo(tmp_path / "demo-data", "--tasks", "3000")
    pid = None
    deadline = time.monotonic() + 60
    assert demo.stdout is not None
    for line in demo.stdout:  # wait until the receiver runs and the workload is being sent
        found = re.search(r"receiver pid (\d+)", line)
        pid = int(found.group(1)) if found else pid
        if "sending 3000 tasks" in line or time.monotonic() > deadline:
            break
    assert pid is not None and _alive(pid)
    demo.send_signal(signal.SIGINT)
    _, stderr = demo.communicate(timeout=90)
    assert demo.returncode == 130
    assert "interrupted: everything the demo started is stopped" in stderr
    assert not _alive(pid)


def test_refuses_to_wipe_a_directory_that_is_not_a_dataset(tmp_path):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("do not delete")
    done = subprocess.run(
        [sys.executable, "-m", "collector_ext.demo", "--data-dir", str(precious)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert done.returncode == 1
    assert done.stderr.strip() == f"error: {precious} exists and is not an agentmeter dataset: not wiping it"
    assert (precious / "thesis.tex").read_text() == "do not delete"


def test_workload_gpu_pods_are_the_fake_kubelets_claims():
    cluster = demo_cluster([(gpu.pod.namespace, gpu.pod.name) for gpu in GPU_SLICES])
    served = {
        (pod.namespace, pod.name, container.name, claim.claim_name, claim.device, claim.pool, claim.driver)
        for pod in cluster
        for container in pod.containers
        for claim in container.claims
        if claim.driver == "gpu.nvidia.com"  # the demo's IMEX channel is a claim, not a GPU slice
    }
    assert served == {
        (g.pod.namespace, g.pod.name, g.pod.container, g.claim_name, g.device, g.pool, g.driver) for g in GPU_SLICES
    }
    assert set(AGENTS["ticket-classifier"].pods) == {gpu.pod for gpu in GPU_SLICES}
