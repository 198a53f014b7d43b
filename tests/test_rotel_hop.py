"""A real collector hop: OTel SDK -> rotel (a Rust OTLP collector from PyPI) -> collector-ext -> Parquet.

rotel batches, re-encodes and gzips what it forwards, as an OpenTelemetry Collector would; the dataset must
still hold exactly the workload that was sent: rows, LLM calls and tokens per agent, and the task trees
(each sub-agent trace in the task of the orchestrator whose span it links to).
"""

from __future__ import annotations

import signal
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import psutil
import pytest
import rotel
from conftest import free_port
from receiver_process import ReceiverProcess

from analyzer.dataset import open_dataset
from analyzer.tasks import install_task_views
from collector_ext.demo.loadgen import WorkloadSpec, make_exporter, run_workload

ROTEL_AGENT = Path(rotel.__file__).parent / "rotel-agent"  # the wheel ships the binary beside the package
START = datetime(2026, 5, 4, 9, 30, tzinfo=UTC)
pytestmark = pytest.mark.slow


START_ATTEMPTS = 5


def listening_ports(pid: int) -> set[int]:
    """The loopback TCP ports process `pid` listens on (what the kernel says: the process's own sockets)."""
    return {c.laddr.port for c in psutil.Process(pid).net_connections("tcp") if c.status == psutil.CONN_LISTEN}


class Rotel:
    """rotel-agent in the foreground (no --daemon, so its pid is ours to stop).

    rotel cannot bind port 0 (it panics), so its ports are chosen free here and released before it binds
    them: another process may take one in between. start() therefore checks that the port clients will use
    is one rotel's own pid listens on, and starts again on new ports when rotel could not bind (it exits 1,
    "unable to bind ... Address already in use")."""

    def __init__(self, receiver_grpc: str, tmp_path: Path) -> None:
        self.receiver_grpc = receiver_grpc
        self.tmp_path = tmp_path
        self.log_path = tmp_path / "rotel.log"
        self.port = 0
        self.process: subprocess.Popen | None = None

    def args(self) -> list[str]:
        return [
            str(ROTEL_AGENT), "start",
            "--otlp-grpc-endpoint", f"127.0.0.1:{self.port}",
            "--otlp-http-endpoint", f"127.0.0.1:{free_port()}",
            "--exporter", "otlp",
            "--otlp-exporter-endpoint", f"http://{self.receiver_grpc}",
            "--otlp-exporter-compression", "gzip",
            "--batch-timeout", "200ms",
            "--pid-file", str(self.tmp_path / "rotel.pid"),
        ]  # fmt: skip

    def start(self) -> Rotel:
        for _ in range(START_ATTEMPTS):  # bounded: a new pair of ports each time rotel could not bind
            self.port = free_port()
            with open(self.log_path, "ab") as log:
                self.process = subprocess.Popen(self.args(), stdout=log, stderr=subprocess.STDOUT)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and self.process.poll() is None:
                if self.port in listening_ports(self.process.pid):
                    return self
                time.sleep(0.05)
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait(10)
                raise AssertionError(f"rotel did not listen within 20 s: {self.log_path.read_text()}")
            assert b"Address already in use" in self.log_path.read_bytes(), self.log_path.read_text()
        raise AssertionError(f"rotel found no free ports in {START_ATTEMPTS} attempts: {self.log_path.read_text()}")

    def stop(self) -> int:
        """SIGTERM: rotel flushes its batches and exits; bounded wait, then SIGKILL."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        return self.process.returncode


def test_workload_through_rotel_lands_exactly(tmp_path, data_dir):
    assert ROTEL_AGENT.is_file()
    receiver = ReceiverProcess(data_dir).start()
    hop = None
    try:
        hop = Rotel(receiver.grpc_endpoint, tmp_path).start()
        result = run_workload(
            WorkloadSpec(tasks=20, seed=21, start=START), lambda: make_exporter(f"127.0.0.1:{hop.port}", "grpc")
        )
        assert result.failed_spans == 0 and result.exported_spans == result.spans_sent
        assert hop.stop() == 0, hop.log_path.read_text()
    finally:
        if hop is not None:
            hop.stop()
        receiver.stop()  # SIGTERM: every held trace is written; asserts exit code 0

    con = open_dataset(data_dir).con
    expected = result.to_json()
    # every span but the health checks (traces without a GenAI span are dropped), each exactly once
    rows, distinct = con.execute("SELECT count(*), count(DISTINCT (trace_id, span_id)) FROM spans").fetchone()
    assert rows == distinct == result.spans_sent - result.noise_spans
    assert con.execute("SELECT count(*) FROM spans WHERE name = 'GET /healthz'").fetchone()[0] == 0

    per_agent = con.execute(
        """SELECT agent_name,
                  count(*) FILTER (WHERE category = 'agent'),
                  count(*) FILTER (WHERE category = 'llm' AND usage_counted),
                  coalesce(sum(input_tokens) FILTER (WHERE usage_counted), 0),
                  coalesce(sum(output_tokens) FILTER (WHERE usage_counted), 0),
                  coalesce(sum(cache_read_tokens) FILTER (WHERE usage_counted), 0),
                  coalesce(sum(reasoning_tokens) FILTER (WHERE usage_counted), 0)
           FROM spans GROUP BY agent_name ORDER BY agent_name"""
    ).fetchall()
    assert per_agent == [
        (
            name,
            u["runs"],
            u["llm_calls"],
            u["input_tokens"],
            u["output_tokens"],
            u["cache_read_tokens"],
            u["reasoning_tokens"],
        )
        for name, u in expected["agents"].items()
    ]

    # the analyzer's task resolution puts every linked sub-agent trace under its orchestrator's task
    install_task_views(con)
    resolved: dict[str, set[str]] = {}
    for trace_id, task_id in con.execute("SELECT hex(trace_id), hex(task_id) FROM trace_tasks").fetchall():
        resolved.setdefault(task_id.lower(), set()).add(trace_id.lower())
    assert resolved == {task["task_id"]: set(task["traces"]) for task in expected["tasks"]}
