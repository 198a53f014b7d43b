"""Slow and idle connections and HTTP/2 resets against a real receiver: idle connections, slow headers, slow
bodies and a Content-Length larger than the body neither make /healthz or /v1/traces answer 503/429 nor
hold a connection past the timeouts; HTTP/2 rapid reset is refused by grpc core past the per-connection
stream limit while real exports go on. Every loop is bounded in count and time."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from pathlib import Path

import httpx
import psutil
import pytest
from h2_client import RawGrpcConnection
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from receiver_process import ReceiverProcess
from test_decode import request_of, span

pytestmark = pytest.mark.slow

PROTOBUF = {"content-type": "application/x-protobuf"}
EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
FLAGS = ("--keep", "all", "--max-connections", "64", "--header-timeout-seconds", "2", "--body-timeout-seconds", "3")


def host_port(url_or_endpoint: str) -> tuple[str, int]:
    host, port = url_or_endpoint.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


def closed_within(sock: socket.socket, seconds: float) -> bytes | None:
    """What the server sent before closing the connection, or None if it was still open after `seconds`."""
    received = b""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            data = sock.recv(65536)
        except TimeoutError:
            return None
        except ConnectionResetError:
            return received
        if not data:
            return received
        received += data
    return None


def export_ok(receiver: ReceiverProcess, n: int) -> None:
    response = httpx.post(
        f"{receiver.http_url}/v1/traces",
        content=request_of(span(n, name=f"ok-{n}")).SerializeToString(),
        headers=PROTOBUF,
    )
    assert response.status_code == 200, response.text
    assert httpx.get(f"{receiver.http_url}/healthz").status_code == 200


def established(pid: int, port: int) -> int:
    return sum(
        1
        for connection in psutil.Process(pid).net_connections(kind="tcp")
        if connection.status == psutil.CONN_ESTABLISHED and connection.laddr and connection.laddr.port == port
    )


def test_idle_connections_neither_block_health_checks_nor_stay(data_dir: Path) -> None:
    with ReceiverProcess(data_dir, *FLAGS) as receiver:
        address = host_port(receiver.http_url)
        idle = [socket.create_connection(address, timeout=10) for _ in range(300)]
        try:
            # the oldest idle connections make room for new ones: health checks and exports get through
            for n in range(5):
                export_ok(receiver, n)
            deadline = time.monotonic() + 20
            while established(receiver.pid, address[1]) > 64:
                assert time.monotonic() < deadline, established(receiver.pid, address[1])
                time.sleep(0.1)
            # every idle connection is closed: evicted at once, or by the header timeout (2 s)
            assert all(closed_within(sock, 20) == b"" for sock in idle)
        finally:
            for sock in idle:
                sock.close()
        export_ok(receiver, 9)


def test_slow_headers_slow_bodies_and_short_bodies_are_cut_off(data_dir: Path) -> None:
    with ReceiverProcess(data_dir, *FLAGS) as receiver:
        address = host_port(receiver.http_url)
        head = b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
        slow_bodies = []
        for _ in range(40):
            sock = socket.create_connection(address, timeout=10)
            sock.sendall(head + b"Content-Length: 100000\r\n\r\n" + b"\x0a")
            slow_bodies.append(sock)
        short = socket.create_connection(address, timeout=10)
        short.sendall(head + b"Content-Length: 1000\r\n\r\n" + b"\x0a" * 100)  # then nothing more
        slow_header = socket.create_connection(address, timeout=10)
        slow_header.sendall(b"POST /v1/traces HTTP/1.1\r\nHost: x\r\n")
        stop = threading.Event()

        def dribble() -> None:  # one byte per 0.2 s on every slow connection, bounded by the stop event
            for _ in range(100):
                if stop.wait(0.2):
                    return
                for sock in (*slow_bodies, slow_header):
                    with contextlib.suppress(OSError):  # closed by the server already
                        sock.sendall(b"X" if sock is slow_header else b"\x00")

        dribbler = threading.Thread(target=dribble, daemon=True)
        dribbler.start()
        try:
            for n in range(5):  # while they last, nothing else is refused
                export_ok(receiver, n)
            # a body that does not arrive within 3 s: 408, and the connection closes
            for sock in (*slow_bodies, short):
                answer = closed_within(sock, 20)
                assert answer is not None and answer.startswith(b"HTTP/1.1 408 "), answer
            # headers that do not arrive within 2 s: closed without an answer
            assert closed_within(slow_header, 20) == b""
        finally:
            stop.set()
            dribbler.join(5)
            for sock in (*slow_bodies, short, slow_header):
                sock.close()
        export_ok(receiver, 9)
        metrics = receiver.metrics_text()
    assert (
        'agentmeter_requests_total{outcome="body_timeout",signal="traces",transport="http"} 41.0'
        in metrics.splitlines()
    )


def test_idle_grpc_connections_are_closed_and_exports_go_on(data_dir: Path) -> None:
    with ReceiverProcess(data_dir, *FLAGS) as receiver:
        address = host_port(receiver.grpc_endpoint)
        idle = [socket.create_connection(address, timeout=10) for _ in range(100)]
        try:
            # past 64 connections new ones are refused, and those that never finish their HTTP/2 handshake
            # are closed after 2 s: the SDK exporter (which retries) gets through
            assert sdk_export(receiver, "after-idle", 5) == SpanExportResult.SUCCESS
            assert all(closed_within(sock, 20) is not None for sock in idle)
        finally:
            for sock in idle:
                sock.close()


def sdk_export(receiver: ReceiverProcess, name: str, count: int) -> SpanExportResult:
    provider = TracerProvider(resource=Resource.create({"service.name": name}))
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    for n in range(count):
        with provider.get_tracer("reset").start_as_current_span(f"{name}-{n}"):
            pass
    exporter = OTLPSpanExporter(endpoint=receiver.grpc_endpoint, insecure=True, timeout=30)
    try:
        return exporter.export(memory.get_finished_spans())
    finally:
        exporter.shutdown()


def test_http2_rapid_reset_is_refused_past_the_stream_limit_while_exports_go_on(data_dir: Path) -> None:
    flags = ("--keep", "all", "--grpc-max-concurrent-streams", "50")
    with ReceiverProcess(data_dir, *flags) as receiver:
        host, port = host_port(receiver.grpc_endpoint)
        # streams held open past the limit: grpc core refuses them (sent before our SETTINGS are acknowledged:
        # ENHANCE_YOUR_CALM, chttp2 parsing.cc), nothing is queued; the held ones are cancelled after the
        # body timeout, freeing their workers
        with RawGrpcConnection(host, port) as attacker:
            attacker.open_held(EXPORT, 200)
            attacker.drain(3)
            assert attacker.refused >= 150
        # rapid reset: HEADERS + RST_STREAM, 20 x 1,000 streams, while a real client exports
        results: list[SpanExportResult] = []
        done = threading.Event()

        def exports() -> None:
            for round_no in range(10):  # bounded
                results.append(sdk_export(receiver, f"during-{round_no}", 3))
                if done.wait(0.2):
                    break

        client = threading.Thread(target=exports)
        client.start()
        refused = 0
        try:
            deadline = time.monotonic() + 60
            for _round in range(20):
                if time.monotonic() > deadline:
                    break
                try:
                    with RawGrpcConnection(host, port) as attacker:
                        attacker.open_and_reset(EXPORT, 1_000)
                        attacker.drain(0.3)
                        refused += attacker.refused
                except (ConnectionError, OSError):  # the server may end an abusive connection: allowed
                    pass
        finally:
            done.set()
            client.join(120)
        assert results and all(result == SpanExportResult.SUCCESS for result in results)
        assert sdk_export(receiver, "after", 3) == SpanExportResult.SUCCESS
        assert httpx.get(f"{receiver.http_url}/healthz").status_code == 200
