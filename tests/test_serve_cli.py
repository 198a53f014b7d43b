"""`collector-ext serve`: flags from the config fields, precedence flags > env > YAML, clear one-line errors,
clean exits on SIGTERM and SIGINT."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import grpc
import httpx
import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from receiver_process import ReceiverProcess
from test_decode import request_of, span

from collector_ext.config import ReceiverConfig

REPO = Path(__file__).resolve().parent.parent
PROTOBUF = {"content-type": "application/x-protobuf"}


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "collector_ext.cli", "serve", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
        timeout=60,
    )


def test_help_documents_every_config_field() -> None:
    result = run_cli("--help")
    assert result.returncode == 0, result.stderr
    flat = " ".join(result.stdout.replace("│", " ").split())
    for name, field in ReceiverConfig.model_fields.items():
        assert "--" + name.replace("_", "-") in flat, name
        assert " ".join(field.description.split()[:3]) in flat, name
    assert "--config" in flat


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--fsync", "sometimes"), "Invalid value for '--fsync'"),
        (("--grpc-endpoint", "nope"), "--grpc-endpoint: Value error, endpoint 'nope' is not HOST:PORT"),
        (("--writer-id", "a/b"), "--writer-id: Value error, invalid writer id 'a/b'"),
        (("--max-recv-msg-mib", "0"), "--max-recv-msg-mib: Input should be greater than or equal to 1"),
        (("--trace-grace-seconds", "soon"), "Invalid value for '--trace-grace-seconds'"),
        (("--config", "/nonexistent/agentmeter.yaml"), "config file /nonexistent/agentmeter.yaml does not exist"),
    ],
)
def test_invalid_values_are_one_line_errors(args: tuple[str, ...], message: str, tmp_path: Path) -> None:
    result = run_cli("--data-dir", str(tmp_path / "d"), *args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert message in lines[0], lines[0]


def serve_expecting_a_start_error(data_dir: Path, grpc_endpoint: str = "127.0.0.1:0"):
    """`collector-ext serve` on loopback with nothing optional; the callers expect it to fail at start."""
    return run_cli(
        "--data-dir",
        str(data_dir),
        "--grpc-endpoint",
        grpc_endpoint,
        "--http-endpoint",
        "127.0.0.1:0",
        "--scaler-endpoint",
        "",
        "--podresources-interval-seconds",
        "0",
        "--log-level",
        "error",
    )


def test_port_in_use_is_a_one_line_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = serve_expecting_a_start_error(tmp_path / "d", f"127.0.0.1:{port}")
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [f"error: cannot listen on 127.0.0.1:{port} (address in use?)"]
    assert "Traceback" not in result.stderr


def test_a_data_dir_that_cannot_be_created_is_one_line_and_exit_1(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    result = serve_expecting_a_start_error(blocker / "data")
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [f"error: cannot start the receiver: Not a directory: {blocker / 'data'}"]
    assert "Traceback" not in result.stderr


def plain_span_request() -> bytes:
    return request_of(span(0, name="plain-http-span")).SerializeToString()


def written(data_dir: Path) -> list[tuple[str, str]]:
    query = f"SELECT filename, name FROM read_parquet('{data_dir}/spans/date=*/*.parquet', filename=true)"
    return [(Path(f).name.rsplit("-", 1)[0], n) for f, n in duckdb.connect().execute(query).fetchall()]


def test_precedence_flags_over_env_over_yaml(tmp_path: Path) -> None:
    config = tmp_path / "agentmeter.yaml"
    config.write_text("writer_id: from-yaml\nkeep: genai\ntrace_grace_seconds: 0.1\n")
    # YAML says keep genai (the plain span would be dropped); the environment says all: env wins
    data_dir = tmp_path / "env"
    with ReceiverProcess(data_dir, "--config", str(config), writer_id=None, env={"AGENTMETER_KEEP": "all"}) as r:
        assert httpx.post(f"{r.http_url}/v1/traces", content=plain_span_request(), headers=PROTOBUF).status_code == 200
    assert written(data_dir) == [("from-yaml", "plain-http-span")]
    # a flag beats both
    data_dir = tmp_path / "flag"
    with ReceiverProcess(
        data_dir, "--config", str(config), "--keep", "genai", writer_id="from-flag", env={"AGENTMETER_KEEP": "all"}
    ) as r:
        assert httpx.post(f"{r.http_url}/v1/traces", content=plain_span_request(), headers=PROTOBUF).status_code == 200
        r.stop()
    assert not list(data_dir.glob("spans/date=*/*.parquet"))
    assert "from-flag" in r.log()


def test_sigint_is_a_clean_stop_too(data_dir: Path) -> None:
    receiver = ReceiverProcess(data_dir, "--keep", "all").start()
    try:
        assert (
            httpx.post(f"{receiver.http_url}/v1/traces", content=plain_span_request(), headers=PROTOBUF).status_code
            == 200
        )
        receiver.process.send_signal(signal.SIGINT)
        assert receiver.process.wait(60) == 0
    finally:
        receiver.kill()
    assert written(data_dir) == [("test", "plain-http-span")]
    assert '"event": "receiver ready"' in receiver.log()


def test_ports_given_as_0_are_chosen_at_bind_and_reported_in_the_ready_file_and_the_log(data_dir: Path) -> None:
    """Every endpoint on port 0: the kernel picks the ports when the receiver binds them (nothing can take them
    in between), the ready file and the `receiver ready` line say which, and the file goes at the stop."""
    ready_file = data_dir.parent / "ready.json"
    args = ["serve", "--data-dir", str(data_dir), "--writer-id", "test", "--keep", "all", "--log-format", "json"]
    args += ["--grpc-endpoint", "127.0.0.1:0", "--http-endpoint", "127.0.0.1:0", "--scaler-endpoint", "127.0.0.1:0"]
    args += ["--podresources-interval-seconds", "0", "--span-max-age-hours", "0", "--trace-grace-seconds", "0.2"]
    args += ["--ready-file", str(ready_file)]
    log = data_dir.parent / "serve.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "collector_ext.cli", *args], cwd=REPO, stdout=out, stderr=out)
    try:
        for _ in range(600):  # bounded: up to 30 s
            if ready_file.exists() or process.poll() is not None:
                break
            time.sleep(0.05)
        ready = json.loads(ready_file.read_text())
        assert ready["pid"] == process.pid
        ports = {name: int(ready[name].removeprefix("127.0.0.1:")) for name in ("grpc", "http", "scaler")}
        assert all(port > 0 for port in ports.values()) and len(set(ports.values())) == 3
        url = f"http://{ready['http']}/v1/traces"
        assert httpx.post(url, content=plain_span_request(), headers=PROTOBUF).status_code == 200
        with grpc.insecure_channel(ready["scaler"]) as channel:  # the scaler answers where the file says
            grpc.channel_ready_future(channel).result(timeout=10)
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    assert not ready_file.exists()  # the endpoints are gone with the receiver
    (line,) = [json.loads(line) for line in log.read_text().splitlines() if '"receiver ready"' in line]
    assert (line["grpc"], line["http"], line["scaler"]) == (ready["grpc"], ready["http"], ready["scaler"])
    assert written(data_dir) == [("test", "plain-http-span")]


def test_restart_after_kill_on_the_same_ports(data_dir: Path) -> None:
    """The helper's kill() + start() (the crash-test pattern): held spans come back from the WAL once."""
    receiver = ReceiverProcess(data_dir, "--keep", "all", "--trace-grace-seconds", "60").start()
    try:
        url = f"{receiver.http_url}/v1/traces"
        assert httpx.post(url, content=plain_span_request(), headers=PROTOBUF).status_code == 200
        first_pid = receiver.pid
        receiver.kill()
        assert receiver.returncode == -signal.SIGKILL
        assert not list(data_dir.glob("spans/date=*/*.parquet"))
        receiver.start()
        assert receiver.pid != first_pid and f"{receiver.http_url}/v1/traces" == url
        receiver.stop()
    finally:
        receiver.kill()
    assert written(data_dir) == [("test", "plain-http-span")]


def test_flags_reach_the_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import collector_ext.server
    from collector_ext.cli import main

    seen: list[ReceiverConfig] = []
    monkeypatch.setattr(collector_ext.server, "run_server", lambda config: seen.append(config) or 0)
    args = ["serve", "--data-dir", str(tmp_path), "--writer-id", "w1", "--fsync", "never", "--keep", "genai"]
    args += [
        "--gpu-metric-names",
        "A",
        "--gpu-metric-names",
        "B",
        "--trace-grace-seconds",
        "1.5",
        "--scaler-endpoint",
        "",
    ]
    assert main(args) == 0
    assert main(["serve", "--data-dir", str(tmp_path)]) == 0
    given, defaults = seen
    assert (given.writer_id, given.fsync, given.keep, given.trace_grace_seconds) == ("w1", "never", "genai", 1.5)
    assert (given.gpu_metric_names, given.scaler_endpoint, given.data_dir) == (["A", "B"], None, str(tmp_path))
    assert defaults.gpu_metric_names == ReceiverConfig.model_fields["gpu_metric_names"].default_factory()
    assert (defaults.fsync, defaults.keep, defaults.scaler_endpoint) == ("always", "trace", "localhost:9090")


def test_a_second_receiver_with_the_same_writer_id_refuses_to_start(data_dir: Path) -> None:
    """Two receivers on one data dir with one writer id would overwrite each other's files and delete each
    other's WAL segments: the second refuses, with one line, whatever its WAL directory; the first goes on
    and writes what it acknowledged once."""
    with ReceiverProcess(data_dir, "--keep", "all") as first:
        for extra in ((), ("--wal-dir", str(data_dir.parent / "other-wal"))):
            result = run_cli(
                "--data-dir", str(data_dir), "--writer-id", "test", "--grpc-endpoint", "127.0.0.1:0",
                "--http-endpoint", "127.0.0.1:0", "--scaler-endpoint", "", *extra,
            )  # fmt: skip
            assert result.returncode == 2, result.stderr
            lines = result.stderr.strip().splitlines()
            assert len(lines) == 1, result.stderr
            assert lines[0].startswith(f"error: writer id 'test' is in use on {data_dir}: another receiver (pid ")
            assert lines[0].endswith("; give every receiver its own --writer-id and --wal-dir")
            assert f"pid {first.pid} on " in lines[0]
        # another writer id on the same WAL directory is refused too: one WAL, one owner
        result = run_cli(
            "--data-dir", str(data_dir), "--writer-id", "other", "--wal-dir", str(data_dir / "_wal" / "test"),
            "--grpc-endpoint", "127.0.0.1:0", "--http-endpoint", "127.0.0.1:0", "--scaler-endpoint", "",
        )  # fmt: skip
        assert result.returncode == 2 and f"holds {data_dir / '_wal' / 'test' / 'LOCK'}" in result.stderr
        url = f"{first.http_url}/v1/traces"
        assert httpx.post(url, content=plain_span_request(), headers=PROTOBUF).status_code == 200
    assert written(data_dir) == [("test", "plain-http-span")]
    # the lock dies with its holder: the same writer id starts again
    with ReceiverProcess(data_dir, "--keep", "all"):
        pass


def test_a_damaged_parquet_file_of_this_writer_does_not_keep_the_receiver_from_starting(data_dir: Path) -> None:
    wal = data_dir / "_wal" / "test"
    with ReceiverProcess(data_dir, "--keep", "all", "--trace-grace-seconds", "60") as receiver:
        url = f"{receiver.http_url}/v1/traces"
        assert httpx.post(url, content=plain_span_request(), headers=PROTOBUF).status_code == 200
        segments = {p.name: p.read_bytes() for p in wal.glob("*.wal")}  # acknowledged: in the WAL
    assert len(segments) == 1 and not list(wal.glob("*.wal"))  # written out at the stop, the segment retired
    for name, content in segments.items():  # as if killed before the written segment was deleted
        (wal / name).write_bytes(content)
    (damaged,) = data_dir.glob("spans/date=*/*.parquet")
    damaged.write_bytes(damaged.read_bytes()[:50])  # truncated
    with ReceiverProcess(data_dir, "--keep", "all") as restarted:
        metrics = restarted.metrics_text()
    assert "agentmeter_parquet_quarantined_files_total 1.0" in metrics.splitlines()
    assert '"event": "damaged Parquet file moved to quarantine"' in restarted.log()
    assert (data_dir / "_quarantine" / "spans" / damaged.parent.name / damaged.name).exists()
    assert written(data_dir) == [("test", "plain-http-span")]  # written again from the WAL, once


def test_serve_never_imports_the_otel_sdk_the_analyzer_or_the_demo(data_dir: Path) -> None:
    """The receiver's import graph, decode processes included, as Python reports it (-X importtime) while a
    real `serve` starts, takes a trace and a metrics export, and stops."""
    receiver = ReceiverProcess(data_dir, "--keep", "all", "--decode-processes", "1")
    receiver.args[1:1] = ["-X", "importtime"]
    with receiver:
        url = f"{receiver.http_url}/v1/traces"
        assert httpx.post(url, content=plain_span_request(), headers=PROTOBUF).status_code == 200
        metrics = ExportMetricsServiceRequest()
        metrics.resource_metrics.add().scope_metrics.add().metrics.add(name="DCGM_FI_DEV_GPU_UTIL")
        metrics_url = f"{receiver.http_url}/v1/metrics"
        assert httpx.post(metrics_url, content=metrics.SerializeToString(), headers=PROTOBUF).status_code == 200
    imported = {
        line.rsplit("|", 1)[1].strip()
        for line in receiver.log_path.read_text().splitlines()
        if line.startswith("import time:")
    }
    assert {"collector_ext.server", "collector_ext.decode.spans", "collector_ext.traces.pipeline"} <= imported
    assert "pyarrow.parquet" in imported
    forbidden = [
        name
        for name in imported
        for package in ("opentelemetry.sdk", "opentelemetry.exporter", "analyzer", "collector_ext.demo")
        if name == package or name.startswith(package + ".")
    ]
    assert forbidden == []
