"""The workload generator, through the real OTel SDK exporters, into in-process OTLP collectors.

The collectors here are real servers: a grpc TraceService built from the opentelemetry-proto service stubs,
and an OTLP/HTTP endpoint on http.server. What arrives is decoded independently of the generator (its own
small dialect table below) and must match the generator's expected totals and task trees exactly.
"""

from __future__ import annotations

import gzip
import json
import socket
import subprocess
import sys
import threading
from collections import Counter, defaultdict
from concurrent import futures
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from collector_ext.demo.loadgen import GPU_SLICES, WorkloadSpec, make_exporter, run_workload

START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)

# canonical usage key -> the attribute names each dialect uses for it (input includes cache, output reasoning)
TOKEN_KEYS = {
    "input_tokens": ("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens", "llm.token_count.prompt"),
    "output_tokens": ("gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens", "llm.token_count.completion"),
    "cache_read_tokens": (
        "gen_ai.usage.cache_read.input_tokens",
        "gen_ai.usage.cache_read_input_tokens",
        "llm.token_count.prompt_details.cache_read",
    ),
    "cache_write_tokens": ("gen_ai.usage.cache_creation.input_tokens", "llm.token_count.prompt_details.cache_write"),
    "reasoning_tokens": ("gen_ai.usage.reasoning.output_tokens", "llm.token_count.completion_details.reasoning"),
}


class TraceCollector(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self) -> None:
        self.requests: list[trace_service_pb2.ExportTraceServiceRequest] = []
        self.lock = threading.Lock()

    def Export(self, request, context):  # noqa: N802 (gRPC method name)
        with self.lock:
            self.requests.append(request)
        return trace_service_pb2.ExportTraceServiceResponse()


@pytest.fixture
def grpc_collector():
    collector = TraceCollector()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(collector, server)
    port = server.add_insecure_port("127.0.0.1:0")  # the kernel picks a free port as it binds
    server.start()
    yield f"127.0.0.1:{port}", collector
    server.stop(grace=None).wait(5)


@pytest.fixture
def http_collector():
    received: list[tuple[dict[str, str], trace_service_pb2.ExportTraceServiceRequest]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            received.append(
                (
                    {k.lower(): v for k, v in self.headers.items()},
                    trace_service_pb2.ExportTraceServiceRequest.FromString(body),
                )
            )
            payload = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
            self.send_response(200 if self.path == "/v1/traces" else 404)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", received
    server.shutdown()
    server.server_close()
    thread.join(5)


def _value(any_value):
    kind = any_value.WhichOneof("value")
    if kind == "array_value":
        return tuple(_value(v) for v in any_value.array_value.values)
    return getattr(any_value, kind) if kind else None


def flatten(requests) -> list[dict]:
    """Every received span as a dict: ids in hex, attributes and resource attributes as plain dicts."""
    spans = []
    for request in requests:
        for resource_spans in request.resource_spans:
            resource = {kv.key: _value(kv.value) for kv in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    spans.append(
                        {
                            "trace_id": span.trace_id.hex(),
                            "span_id": span.span_id.hex(),
                            "parent": span.parent_span_id.hex() or None,
                            "name": span.name,
                            "start": span.start_time_unix_nano,
                            "end": span.end_time_unix_nano,
                            "attributes": {kv.key: _value(kv.value) for kv in span.attributes},
                            "links": [(link.trace_id.hex(), link.span_id.hex()) for link in span.links],
                            "resource": resource,
                        }
                    )
    return spans


def is_agent(span: dict) -> bool:
    return span["name"] == "agent.loop" or span["attributes"].get("gen_ai.operation.name") == "invoke_agent"


def is_llm(span: dict) -> bool:
    attributes = span["attributes"]
    return (
        attributes.get("gen_ai.operation.name") == "chat"
        or attributes.get("openinference.span.kind") == "LLM"
        or attributes.get("llm.request.type") == "chat"
    )


def usage_of(span: dict) -> dict[str, int]:
    attributes = span["attributes"]
    usage = {}
    for column, keys in TOKEN_KEYS.items():
        usage[column] = sum(int(attributes[k]) for k in keys if k in attributes)
    return usage


def per_agent_totals(spans: list[dict]) -> dict[str, dict[str, int]]:
    """Attribute each LLM span to its nearest enclosing agent span in the same trace; sum its usage."""
    by_id = {(s["trace_id"], s["span_id"]): s for s in spans}
    totals: dict[str, Counter] = defaultdict(Counter)
    for span in spans:
        if is_agent(span):
            totals[span["attributes"]["gen_ai.agent.name"]]["runs"] += 1
        if not is_llm(span):
            continue
        parent = by_id[(span["trace_id"], span["parent"])]
        while not is_agent(parent):
            parent = by_id[(parent["trace_id"], parent["parent"])]
        agent = totals[parent["attributes"]["gen_ai.agent.name"]]
        agent["llm_calls"] += 1
        agent.update(usage_of(span))
    keys = ("runs", "llm_calls", *TOKEN_KEYS)
    return {name: {k: counter[k] for k in keys} for name, counter in totals.items()}


def task_trees(spans: list[dict]) -> list[dict]:
    """Rebuild every task tree from span links alone: a sub-agent's root links to the delegating span."""
    by_id = {(s["trace_id"], s["span_id"]): s for s in spans}
    agents = [s for s in spans if is_agent(s)]
    children: dict[str, list[dict]] = defaultdict(list)
    tops = []
    for agent in agents:
        if not agent["links"]:
            tops.append(agent)
            continue
        (link,) = agent["links"]
        delegating = by_id[link]
        while not is_agent(delegating):
            delegating = by_id[(delegating["trace_id"], delegating["parent"])]
        children[delegating["span_id"]].append(agent)

    def node(agent: dict) -> dict:
        kids = sorted(children[agent["span_id"]], key=lambda s: (s["start"], s["span_id"]))
        return {
            "agent": agent["attributes"]["gen_ai.agent.name"],
            "trace_id": agent["trace_id"],
            "span_id": agent["span_id"],
            "children": [node(k) for k in kids],
        }

    return [node(a) for a in sorted(tops, key=lambda s: (s["start"], s["span_id"]))]


def test_grpc_workload_matches_expected_totals_and_trees(grpc_collector):
    endpoint, collector = grpc_collector
    spec = WorkloadSpec(tasks=30, seed=11, start=START)
    result = run_workload(spec, lambda: make_exporter(endpoint, "grpc", gzip=True))
    spans = flatten(collector.requests)

    assert result.tasks_sent == 30 and not result.stopped_early
    assert len(spans) == result.spans_sent == result.exported_spans
    assert result.failed_spans == 0
    assert len({s["trace_id"] for s in spans}) == result.traces_sent
    assert len({(s["trace_id"], s["span_id"]) for s in spans}) == len(spans)

    expected = result.to_json()
    assert per_agent_totals(spans) == expected["agents"]
    assert task_trees(spans) == [task["tree"] for task in expected["tasks"]]
    # the workload is rich enough to exercise what the analyzer must handle
    assert {s["resource"]["k8s.namespace.name"] for s in spans} == {"research", "support", "sandbox"}
    providers = {s["attributes"].get("gen_ai.provider.name") or s["attributes"].get("llm.provider") for s in spans}
    assert {"openai", "anthropic", "aws.bedrock", "vllm"} <= providers
    assert max(max(_depths(task)) for task in expected["tasks"]) >= 2  # sub-agents spawn sub-agents
    assert expected["total"]["cache_read_tokens"] > 0 and expected["total"]["cache_write_tokens"] > 0
    assert expected["total"]["reasoning_tokens"] > 0
    assert result.noise_traces > 0
    health = [s for s in spans if s["name"] == "GET /healthz"]
    assert len(health) == result.noise_spans
    # the self-hosted model runs only on the pods holding the demo's GPU slices
    llama_pods = {s["resource"]["k8s.pod.name"] for s in spans if s["attributes"].get("gen_ai.provider.name") == "vllm"}
    assert llama_pods <= {gpu.pod.name for gpu in GPU_SLICES} and llama_pods


def _depths(task: dict):
    def walk(node, depth):
        yield depth
        for child in node["children"]:
            yield from walk(child, depth + 1)

    return walk(task["tree"], 0)


def test_simulated_clock_bursts_and_idle_gaps(grpc_collector):
    endpoint, collector = grpc_collector
    spec = WorkloadSpec(tasks=25, seed=5, start=START)
    result = run_workload(spec, lambda: make_exporter(endpoint))
    spans = flatten(collector.requests)
    start_ns = int(START.timestamp() * 1e9)
    assert min(s["start"] for s in spans) == start_ns == result.first_start_ns
    assert max(s["end"] for s in spans) == result.last_end_ns
    assert all(s["end"] >= s["start"] for s in spans)
    # orchestrator arrivals: gaps inside bursts are at most 90 s, between bursts at least 10 minutes
    arrivals = sorted(task.start_ns for task in result.tasks)
    gaps = [(b - a) / 1e9 for a, b in zip(arrivals, arrivals[1:], strict=False)]
    assert all(5 <= g <= 90 or 600 <= g <= 6 * 3600 for g in gaps)
    assert any(g >= 600 for g in gaps) and any(g <= 90 for g in gaps)
    # days of simulated time, sent in well under a minute of wall time
    assert (result.last_end_ns - result.first_start_ns) / 1e9 > 3 * 3600


def test_same_seed_same_spans_different_seed_different_spans():
    def run(seed: int) -> tuple[dict, list]:
        exporters: list[InMemorySpanExporter] = []

        def factory():
            exporters.append(InMemorySpanExporter())
            return exporters[-1]

        result = run_workload(WorkloadSpec(tasks=12, seed=seed, start=START), factory)
        spans = sorted(
            (s.context.trace_id, s.context.span_id, s.name, s.start_time, s.end_time, dict(s.attributes))
            for e in exporters
            for s in e.get_finished_spans()
        )
        return result.to_json(), spans

    first, second, other = run(3), run(3), run(4)
    assert first == second
    assert first[0]["total"] != other[0]["total"]
    assert not {s[:2] for s in first[1]} & {s[:2] for s in other[1]}


def test_http_protobuf_gzip(http_collector):
    url, received = http_collector
    result = run_workload(
        WorkloadSpec(tasks=6, seed=2, start=START), lambda: make_exporter(url, "http/protobuf", gzip=True)
    )
    assert received and all(h["content-encoding"] == "gzip" for h, _ in received)
    assert all(h["content-type"] == "application/x-protobuf" for h, _ in received)
    spans = flatten([r for _, r in received])
    assert len(spans) == result.spans_sent == result.exported_spans
    assert per_agent_totals(spans) == result.to_json()["agents"]


def test_max_seconds_guard_and_pacing_bound_the_run(grpc_collector):
    endpoint, collector = grpc_collector
    slept: list[float] = []
    spec = WorkloadSpec(tasks=10_000, seed=1, start=START, time_scale=1e-6, max_seconds=0.3)
    result = run_workload(spec, lambda: make_exporter(endpoint), sleep=slept.append)
    # time_scale 1e-6 asks for enormous waits; each is cut to the time left under --max-seconds
    assert slept and max(slept) <= 0.3
    assert result.stopped_early and 0 < result.tasks_sent < 10_000
    spans = flatten(collector.requests)
    assert len(spans) == result.spans_sent
    assert per_agent_totals(spans) == result.to_json()["agents"]


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="not HOST:PORT"):
        make_exporter("no-port-here")
    with pytest.raises(ValueError, match="unknown protocol"):
        make_exporter("127.0.0.1:4317", "thrift")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max-seconds"):
        run_workload(WorkloadSpec(tasks=1, max_seconds=0), InMemorySpanExporter)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "collector_ext.cli", "loadgen", *args], capture_output=True, text=True, timeout=60
    )


def test_cli_sends_and_writes_expected_json(grpc_collector, tmp_path):
    endpoint, collector = grpc_collector
    out = tmp_path / "expected.json"
    done = _cli("--endpoint", endpoint, "--tasks", "5", "--seed", "9", "--start", "2026-03-02T08:00:00Z")
    done = _cli(
        "--endpoint", endpoint, "--tasks", "5", "--seed", "9", "--start", "2026-03-02T08:00:00Z",
        "--expected-out", str(out), "--quiet",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("sent 5 tasks")
    expected = json.loads(out.read_text())
    spans = flatten(collector.requests)
    # two identical runs (same seed): every span arrived twice, the expected totals describe one run
    assert len(spans) == 2 * expected["spans_sent"]
    assert len({(s["trace_id"], s["span_id"]) for s in spans}) == expected["spans_sent"]
    once = list({(s["trace_id"], s["span_id"]): s for s in spans}.values())
    assert per_agent_totals(once) == expected["agents"]
    assert expected["first_start"] == "2026-03-02T08:00:00+00:00"


def test_cli_errors_are_one_line():
    done = _cli("--endpoint", "nowhere", "--tasks", "1")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == ["error: endpoint 'nowhere' is not HOST:PORT"]
    done = _cli("--protocol", "thrift", "--tasks", "1")
    assert done.returncode == 2
    assert done.stderr.strip() == "error: --protocol must be grpc or http/protobuf, not 'thrift'"
    with socket.socket() as closed:  # bound, never listening: connections are refused, and no one else can take it
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        done = _cli("--endpoint", f"127.0.0.1:{port}", "--tasks", "1", "--seed", "1", "--quiet", "--timeout", "0.5")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith("error: the exporter could not deliver")


def test_cli_help_teaches_every_option():
    done = _cli("--help")
    assert done.returncode == 0, done.stderr
    for option in (
        "--endpoint",
        "--tasks",
        "--seed",
        "--protocol",
        "--gzip",
        "--start",
        "--time-scale",
        "--max-seconds",
    ):
        assert option in done.stdout
