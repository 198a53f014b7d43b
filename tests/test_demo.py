"""`make demo` end to end: a real receiver, fake kubelet, workload, Parquet and analyzer; a short workload.

The demo itself checks the dataset against the workload's expected totals (exit 1 on a mismatch); this
test also re-reads the dataset through `analyze cost --format json`, checks the processes it started are
gone, and that Ctrl-C stops everything.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
from conftest import DemoRun
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.trace import SpanContext

from collector_ext.demo.fake_kubelet import demo_cluster
from collector_ext.demo.loadgen import AGENTS, GPU_SLICES, make_exporter
from collector_ext.demo.run import TRY_NEXT, WorkloadStop

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
        start_new_session=True,  # its own process group, as a terminal gives it
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is not running: its parent (the demo) has exited and it is reaped by init shortly
    status = Path(f"/proc/{pid}/status")
    return status.exists() and "zombie" not in status.read_text()


def test_demo_end_to_end(demo_run: DemoRun):
    data_dir, stdout = demo_run.data_dir, demo_run.stdout
    assert demo_run.returncode == 0, stdout + demo_run.stderr
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
    assert self_hosted["token_cost_usd"] is None and self_hosted["gpu_busy_cost_usd"] > 0
    assert self_hosted["total_cost_usd"] == self_hosted["gpu_busy_cost_usd"]
    assert 0 < self_hosted["unpriced_calls"] < self_hosted["llm_calls"]

    report = data_dir / "report.html"
    assert report.stat().st_size > 10_000 and "plotly" in report.read_text()
    assert f"report:   {report.resolve()}" in stdout
    assert "FAILED" not in stdout

    # everything the demo started is stopped
    (pid,) = re.findall(r"receiver pid (\d+)", stdout)
    assert not _alive(int(pid))
    # every command the demo suggests works on the demo's dataset
    assert "try next (. .venv/bin/activate first):" in stdout
    hints = [line.strip().split("   # ")[0].strip() for line in stdout.split("try next", 1)[1].splitlines()[1:]]
    for args, _why in TRY_NEXT:
        assert f"analyze {args[0]} --data {data_dir} {' '.join(args[1:])}" in hints
    suggested = [shlex.split(h)[1:] for h in hints if h.startswith("analyze ") and not h.startswith("analyze serve")]
    assert len(suggested) == len(TRY_NEXT) + 1  # and the most expensive task, by its short id
    assert re.fullmatch(r"analyze task [0-9a-f]{16} --data \S+", hints[len(TRY_NEXT)])
    for args in suggested:
        done = subprocess.run([sys.executable, "-m", "analyzer.cli", *args], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, f"analyze {' '.join(args)}: {done.stderr}"
    assert f"analyze serve --data {data_dir}" in hints
    # and it ends with the command that opens the console on the demo's data
    assert stdout.rstrip().splitlines()[-1].strip() == (
        f"open the console on this data:  .venv/bin/analyze serve --data {data_dir}   then http://127.0.0.1:8080/"
    )


def _spans_received(http_url: str) -> float:
    """The receiver's own counter of spans received (its Prometheus /metrics), 0 before any."""
    with urllib.request.urlopen(f"{http_url}/metrics", timeout=10) as response:
        text = response.read().decode()
    found = re.search(r"^agentmeter_spans_received_total ([0-9.e+]+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


def test_ctrl_c_stops_everything(tmp_path):
    """Ctrl-C in a terminal signals the demo's whole process group while its workload is being sent."""
    demo = _demo(tmp_path / "demo-data", "--tasks", "3000")
    assert demo.stdout is not None
    pid = http_url = None
    for line in demo.stdout:  # the demo prints these as it gets there (or exits, ending the loop)
        found = re.search(r"receiver pid (\d+) on \S+ \(gRPC\), (http://\S+) \(HTTP\)", line)
        if found:
            pid, http_url = int(found.group(1)), found.group(2)
        if "sending 3000 tasks" in line:
            break
    assert pid is not None and http_url is not None and _alive(pid)
    # observable state, not a sleep: wait until the receiver has counted spans of the workload
    for _ in range(600):
        if _spans_received(http_url) > 0:
            break
        assert demo.poll() is None
        time.sleep(0.1)
    assert _spans_received(http_url) > 0
    os.killpg(demo.pid, signal.SIGINT)  # what Ctrl-C does: the demo and the receiver it started
    _, stderr = demo.communicate(timeout=120)
    assert demo.returncode == 130, stderr
    assert re.search(
        r"interrupted: everything the demo started is stopped \([\d,]+ spans of the workload not sent\)", stderr
    )
    assert not _alive(pid)


class _HeldTraceService(trace_service_pb2_grpc.TraceServiceServicer):
    """A real OTLP gRPC endpoint that holds each call until released, then answers UNAVAILABLE (retryable)."""

    def __init__(self) -> None:
        self.calls = 0
        self.called = threading.Event()
        self.release = threading.Event()

    def Export(self, request, context):  # noqa: N802 (the gRPC method's name)
        self.calls += 1
        self.called.set()
        self.release.wait(60)
        context.abort(grpc.StatusCode.UNAVAILABLE, "going away")


def test_stopping_the_workload_ends_an_export_between_retries_and_sends_nothing_more() -> None:
    service = _HeldTraceService()
    server = grpc.server(ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(service, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    stop = WorkloadStop()
    exporter = stop.wrap(make_exporter(f"127.0.0.1:{port}", "grpc", timeout_s=60))
    span = ReadableSpan(name="x", context=SpanContext(1, 2, False), resource=Resource.create({}))
    results: list[SpanExportResult] = []
    sender = threading.Thread(target=lambda: results.append(exporter.export([span])))
    try:
        sender.start()
        assert service.called.wait(60)  # the export is in flight
        stop.stop()  # Ctrl-C: before the server answers
        service.release.set()  # UNAVAILABLE: the exporter would retry with backoff for up to 60 s
        sender.join(60)
        assert not sender.is_alive() and results == [SpanExportResult.FAILURE]
        assert exporter.export([span]) is SpanExportResult.FAILURE  # later batches are dropped, not sent
        assert (service.calls, stop.dropped) == (1, 1)
    finally:
        service.release.set()
        server.stop(None)


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
