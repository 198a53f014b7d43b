"""Run each framework against the fake OpenAI server and a real agentmeter receiver; keep what it sent.

    .venv/bin/python tests/frameworks/harness/capture.py --out build/frameworks [--only NAME ...]

Per capture (one framework x instrumentation x API, `CAPTURES`), in a fresh directory OUT/NAME:

1. the fake OpenAI-compatible server (fake_openai.py) starts on a free loopback port, logging every call;
2. a real receiver (`collector-ext serve`, tests/receiver_process.py) starts on a dataset of its own, and in
   front of it a recording hop: a gRPC server that forwards every OTLP Export request, byte for byte, to the
   receiver and keeps the bytes (so the fixtures are the requests as the receiver got them);
3. the driver runs in the framework's own virtual environment (.venv-fw/<venv>), exporting with the real
   OTel SDK (BatchSpanProcessor + OTLP gRPC exporter) to the hop;
4. everything stops by its pid; OUT/NAME gets `requests/NNN.pb` (+ `.json`), `server_log.jsonl`, `run.json`
   (the driver's package versions) and `truth.json` (build_truth.py), and `dataset/` the receiver's Parquet.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path

import grpc
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

HARNESS = Path(__file__).resolve().parent
REPO = HARNESS.parents[2]
sys.path.insert(0, str(REPO / "tests"))

from build_truth import build_truth  # noqa: E402
from receiver_process import ReceiverProcess  # noqa: E402

from collector_ext.config import free_loopback_port  # noqa: E402

EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
DRIVER_TIMEOUT_S = 300
START_TIMEOUT_S = 20


@dataclass(frozen=True)
class Capture:
    name: str  # the fixture directory's name
    venv: str  # .venv-fw/<venv>, from tests/frameworks/requirements/<venv>.txt
    driver: str  # harness/<driver>.py
    variant: str = ""  # passed to the driver as FW_VARIANT


CAPTURES = (
    Capture("pydantic-ai__native__chat", "pydantic-ai", "drive_pydantic_ai"),
    Capture("strands__native__chat", "strands", "drive_strands"),
    Capture(
        "openai-agents__openinference__responses", "openai-agents", "drive_openai_agents", "openinference:responses"
    ),
    Capture("openai-agents__openinference__chat", "openai-agents", "drive_openai_agents", "openinference:chat"),
    Capture("openai-agents__traceloop__responses", "openai-agents", "drive_openai_agents", "traceloop:responses"),
    Capture("openai-agents__traceloop__chat", "openai-agents", "drive_openai_agents", "traceloop:chat"),
    Capture(
        "openai-agents__both__responses", "openai-agents", "drive_openai_agents", "openinference+traceloop:responses"
    ),
    Capture("langgraph__openinference-langchain__chat", "langgraph", "drive_langgraph"),
    Capture("google-adk__native-litellm__chat", "google-adk", "drive_google_adk"),
)


class RecordingHop(grpc.GenericRpcHandler):
    """Forwards OTLP trace Export requests to the receiver unchanged and keeps each request's bytes."""

    def __init__(self, target: str) -> None:
        self.channel = grpc.insecure_channel(target)
        self.forward = self.channel.unary_unary(EXPORT)  # no (de)serializers: raw bytes both ways
        self.requests: list[bytes] = []
        self.lock = threading.Lock()

    def service(self, handler_call_details):
        if handler_call_details.method != EXPORT:
            return None
        return grpc.unary_unary_rpc_method_handler(self.export)

    def export(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        with self.lock:
            self.requests.append(request)
        try:
            return self.forward(request, timeout=30)
        except grpc.RpcError as err:
            context.abort(err.code(), err.details() or "")


def wait_http(url: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer within {START_TIMEOUT_S} s")


def hex_ids(value):
    """json_format writes bytes as base64; OTLP/JSON wants lower-case hex trace and span ids."""
    if isinstance(value, dict):
        return {
            k: base64.b64decode(v).hex()
            if k in ("traceId", "spanId", "parentSpanId") and isinstance(v, str)
            else hex_ids(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [hex_ids(v) for v in value]
    return value


def write_requests(requests: list[bytes], directory: Path) -> None:
    directory.mkdir(parents=True)
    for number, payload in enumerate(requests, start=1):
        (directory / f"{number:03d}.pb").write_bytes(payload)
        message = ExportTraceServiceRequest.FromString(payload)
        as_json = hex_ids(json_format.MessageToDict(message, use_integers_for_enums=True))
        (directory / f"{number:03d}.json").write_text(json.dumps(as_json, indent=1) + "\n")


def run_capture(capture: Capture, out: Path) -> float:
    """One capture into out/<name>; returns the driver's wall time in seconds."""
    target = (out / capture.name).resolve()
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    python = REPO / ".venv-fw" / capture.venv / "bin" / "python"
    if not python.exists():
        raise SystemExit(f"{python} is missing: run `make test-frameworks` (it creates .venv-fw/{capture.venv})")
    port = free_loopback_port()
    log = target / "server_log.jsonl"
    fake = subprocess.Popen(
        [sys.executable, str(HARNESS / "fake_openai.py"), "--port", str(port), "--log", str(log)],
        stdout=subprocess.DEVNULL,
        stderr=open(target / "fake_server.err", "wb"),  # noqa: SIM115 (closed with the process)
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/health")
        with ReceiverProcess(target / "dataset", "--keep", "all", log_path=target / "receiver.log") as receiver:
            hop = RecordingHop(receiver.grpc_endpoint)
            server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), handlers=[hop])
            hop_port = server.add_insecure_port("127.0.0.1:0")
            server.start()
            env = {
                **os.environ,
                "FW_FAKE_URL": f"http://127.0.0.1:{port}",
                "FW_OTLP_ENDPOINT": f"127.0.0.1:{hop_port}",
                "FW_OUT": str(target),
                "FW_VARIANT": capture.variant,
                "PYTHONPATH": str(HARNESS),
                "OPENAI_API_KEY": "sk-fake",
                "OPENAI_BASE_URL": f"http://127.0.0.1:{port}/v1",
                "OTEL_SERVICE_NAME": capture.venv,
                "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # LiteLLM would fetch its price map from the network
                "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "",
            }
            started = time.monotonic()
            with open(target / "driver.log", "wb") as driver_log:
                result = subprocess.run(
                    [str(python), str(HARNESS / f"{capture.driver}.py")],
                    env=env,
                    cwd=target,
                    stdout=driver_log,
                    stderr=subprocess.STDOUT,
                    timeout=DRIVER_TIMEOUT_S,
                    check=False,
                )
            elapsed = time.monotonic() - started
            server.stop(grace=5).wait(10)
            hop.channel.close()
            if result.returncode != 0:
                tail = (target / "driver.log").read_text(errors="replace")[-6000:]
                raise SystemExit(f"{capture.name}: driver exited with {result.returncode}:\n{tail}")
        write_requests(hop.requests, target / "requests")
    finally:
        fake.terminate()
        fake.wait(10)
    truth = build_truth(log, target / "run.json", capture.name)
    (target / "truth.json").write_text(json.dumps(truth, indent=1) + "\n")
    return elapsed


FIXTURE_FILES = ("truth.json", "run.json", "server_log.jsonl")


def copy_fixtures(source: Path, out: Path) -> None:
    """The committed part of each capture: requests (.pb and .json), truth, run metadata, the server's log."""
    for capture in CAPTURES:
        target = out / capture.name
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(source / capture.name / "requests", target / "requests")
        for name in FIXTURE_FILES:
            shutil.copyfile(source / capture.name / name, target / name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--only", nargs="*", help="capture names (default: all)")
    parser.add_argument("--fixtures-from", type=Path, help="copy the fixtures of captures made before into --out")
    args = parser.parse_args()
    if args.fixtures_from:
        copy_fixtures(args.fixtures_from, args.out)
        return
    chosen = [c for c in CAPTURES if not args.only or c.name in args.only]
    unknown = set(args.only or ()) - {c.name for c in CAPTURES}
    if unknown:
        raise SystemExit(f"unknown capture(s): {', '.join(sorted(unknown))}")
    for capture in chosen:
        elapsed = run_capture(capture, args.out)
        print(f"{capture.name}: driver {elapsed:.1f} s", flush=True)


if __name__ == "__main__":
    main()
