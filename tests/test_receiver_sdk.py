"""The real OTel SDK exporters (gRPC with and without gzip, HTTP protobuf) -> a real receiver -> Parquet.

A deterministic two-trace agent task: an orchestrator trace (`agent.loop` with an OTel GenAI LLM call, an
MCP tool call and a delegate span) and a sub-agent trace (`invoke_agent`, a new trace with a span link to the
delegate span) whose LLM calls speak three other dialects (OpenInference, Traceloop with the deprecated
names, Vercel AI SDK). Plus a plain health-check trace that the default keep rule drops. After SIGTERM the
test reads the dataset with DuckDB and checks exact rows, per-span tokens and per-agent totals.
"""

from __future__ import annotations

import ssl
import subprocess
import urllib.request
from pathlib import Path

import duckdb
import grpc
import pytest
from grpc import Compression as GrpcCompression
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http import Compression as HttpCompression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from receiver_process import ReceiverProcess

pytestmark = pytest.mark.slow

RESOURCE = {"service.name": "agents", "k8s.namespace.name": "team-a", "k8s.pod.name": "agents-0"}

# span name -> (agent, input tokens, output tokens); None: no usage
EXPECTED = {
    "agent.loop": ("orchestrator", None, None),
    "chat gpt-4o": ("orchestrator", 100, 20),
    "mcp.tool.search": ("orchestrator", None, None),
    "delegate researcher": ("orchestrator", None, None),
    "invoke_agent researcher": ("researcher", None, None),
    "ChatCompletion": ("researcher", 50, 10),
    "anthropic.chat": ("researcher", 40, 8),
    "ai.generateText.doGenerate": ("researcher", 7, 3),
}


def run_workload(exporter) -> tuple[str, str]:
    """Send the task through `exporter`; returns (orchestrator trace id, sub-agent trace id) in hex."""
    provider = TracerProvider(resource=Resource.create(RESOURCE))
    provider.add_span_processor(BatchSpanProcessor(exporter, max_export_batch_size=3, schedule_delay_millis=50))
    tracer = provider.get_tracer("agentmeter.test", "1.0")
    with tracer.start_as_current_span(
        "agent.loop", attributes={"gen_ai.agent.name": "orchestrator", "gen_ai.operation.name": "invoke_agent"}
    ) as root:
        with tracer.start_as_current_span(
            "chat gpt-4o",
            kind=trace.SpanKind.CLIENT,
            attributes={
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": "openai",
                "gen_ai.request.model": "gpt-4o",
                "gen_ai.usage.input_tokens": 100,
                "gen_ai.usage.output_tokens": 20,
            },
        ):
            pass
        with tracer.start_as_current_span("mcp.tool.search", attributes={"gen_ai.tool.name": "search"}):
            pass
        with tracer.start_as_current_span("delegate researcher") as delegate:
            delegate_context = delegate.get_span_context()
    # the sub-agent starts a new trace (fresh root context) linked to the delegate span
    token = otel_context.attach(otel_context.Context())
    try:
        with tracer.start_as_current_span(
            "invoke_agent researcher",
            attributes={"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "researcher"},
            links=[trace.Link(delegate_context, {"agentmeter.link": "delegate"})],
        ) as sub:
            with tracer.start_as_current_span(
                "ChatCompletion",
                attributes={
                    "openinference.span.kind": "LLM",
                    "llm.model_name": "gpt-4o-mini",
                    "llm.token_count.prompt": 50,
                    "llm.token_count.completion": 10,
                },
            ):
                pass
            with tracer.start_as_current_span(
                "anthropic.chat",
                attributes={
                    "llm.request.type": "chat",
                    "gen_ai.system": "Anthropic",
                    "gen_ai.request.model": "claude-sonnet-4",
                    "gen_ai.usage.prompt_tokens": 40,
                    "gen_ai.usage.completion_tokens": 8,
                },
            ):
                pass
            with tracer.start_as_current_span(
                "ai.generateText.doGenerate",
                attributes={
                    "ai.model.id": "gpt-4.1",
                    "ai.model.provider": "openai.chat",
                    "ai.usage.promptTokens": 7,
                    "ai.usage.completionTokens": 3,
                },
            ):
                pass
    finally:
        otel_context.detach(token)
    token = otel_context.attach(otel_context.Context())
    try:
        with tracer.start_as_current_span("GET /healthz", kind=trace.SpanKind.SERVER):
            pass
    finally:
        otel_context.detach(token)
    assert provider.force_flush(10_000)
    provider.shutdown()
    return format(root.get_span_context().trace_id, "032x"), format(sub.get_span_context().trace_id, "032x")


EXPORTERS = {
    "grpc": lambda r: GrpcExporter(endpoint=r.grpc_endpoint, insecure=True),
    "grpc-gzip": lambda r: GrpcExporter(endpoint=r.grpc_endpoint, insecure=True, compression=GrpcCompression.Gzip),
    "http-protobuf-gzip": lambda r: HttpExporter(endpoint=f"{r.http_url}/v1/traces", compression=HttpCompression.Gzip),
    "http-protobuf": lambda r: HttpExporter(endpoint=f"{r.http_url}/v1/traces"),
    "http-protobuf-deflate": lambda r: HttpExporter(
        endpoint=f"{r.http_url}/v1/traces", compression=HttpCompression.Deflate
    ),
}


@pytest.mark.parametrize("transport", EXPORTERS)
def test_sdk_workload_lands_exactly(transport: str, data_dir: Path) -> None:
    with ReceiverProcess(data_dir) as receiver:
        orchestrator_trace, sub_trace = run_workload(EXPORTERS[transport](receiver))
        metrics = receiver.metrics_text()
    assert "agentmeter_spans_received_total 9.0" in metrics
    assert 'agentmeter_spans_rejected_total{reason="' not in metrics

    db = duckdb.connect()
    rows = db.execute(
        f"""SELECT name, agent_name, input_tokens, output_tokens, hex(trace_id), hex(task_id), service_name,
                   k8s_namespace, k8s_pod, usage_counted, len(links)
            FROM read_parquet('{data_dir}/spans/date=*/*.parquet') ORDER BY name"""
    ).fetchall()
    assert sorted(r[0] for r in rows) == sorted(EXPECTED)
    for name, agent, inp, out, trace_hex, task_hex, service, namespace, pod, _, _ in rows:
        assert (agent, inp, out) == EXPECTED[name], name
        assert (service, namespace, pod) == ("agents", "team-a", "agents-0")
        # the whole task is the orchestrator's trace, sub-agent trace included
        assert task_hex.lower() == orchestrator_trace, name
        assert trace_hex.lower() == (sub_trace if agent == "researcher" else orchestrator_trace), name
    links = {r[0]: r[10] for r in rows}
    assert links["invoke_agent researcher"] == 1 and links["agent.loop"] == 0

    per_agent = db.execute(
        f"""SELECT agent_name, sum(input_tokens), sum(output_tokens), count(*)
            FROM read_parquet('{data_dir}/spans/date=*/*.parquet')
            WHERE usage_counted GROUP BY agent_name ORDER BY agent_name"""
    ).fetchall()
    assert per_agent == [("orchestrator", 100, 20, 1), ("researcher", 97, 21, 3)]
    link = db.execute(
        f"""SELECT hex(links[1].trace_id), links[1].attributes['agentmeter.link']
            FROM read_parquet('{data_dir}/spans/date=*/*.parquet') WHERE name = 'invoke_agent researcher'"""
    ).fetchone()
    assert link == (orchestrator_trace.upper(), "delegate")


def make_certificates(directory: Path) -> dict[str, Path]:
    """A throw-away CA, a server certificate for 127.0.0.1 and a client certificate (openssl CLI)."""

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True, timeout=60)

    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "1",
        "-subj",
        "/CN=agentmeter-test-ca",
    )
    (directory / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name in ("server", "client"):
        openssl(
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            f"{name}.key",
            "-out",
            f"{name}.csr",
            "-subj",
            f"/CN={name}",
        )
        openssl(
            "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", f"{name}.pem", "-days", "1", "-extfile", "san.ext",
        )  # fmt: skip
    return {name: directory / name for name in ("ca.pem", "server.pem", "server.key", "client.pem", "client.key")}


def test_mtls_with_the_real_exporters(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # requests lets these variables replace the exporter's CA file (it sets the session's verify)
    for variable in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(variable, raising=False)
    certs = make_certificates(tmp_path)
    data_dir = tmp_path / "dataset"
    tls = ssl.create_default_context(cafile=str(certs["ca.pem"]))
    tls.load_cert_chain(str(certs["client.pem"]), str(certs["client.key"]))
    flags = ("--tls-cert", str(certs["server.pem"]), "--tls-key", str(certs["server.key"]))
    flags += ("--tls-client-ca", str(certs["ca.pem"]))
    with ReceiverProcess(data_dir, *flags, tls_context=tls) as receiver:
        credentials = grpc.ssl_channel_credentials(
            root_certificates=certs["ca.pem"].read_bytes(),
            private_key=certs["client.key"].read_bytes(),
            certificate_chain=certs["client.pem"].read_bytes(),
        )
        run_workload(GrpcExporter(endpoint=receiver.grpc_endpoint, credentials=credentials))
        # HTTP with the client certificate works; without it the handshake fails
        http = HttpExporter(
            endpoint=f"{receiver.http_url}/v1/traces",
            certificate_file=str(certs["ca.pem"]),
            client_certificate_file=str(certs["client.pem"]),
            client_key_file=str(certs["client.key"]),
        )
        run_workload(http)
        no_client_cert = ssl.create_default_context(cafile=str(certs["ca.pem"]))
        with pytest.raises((ssl.SSLError, OSError)):
            urllib.request.urlopen(f"{receiver.http_url}/healthz", timeout=5, context=no_client_cert).read()
        # gRPC without a client certificate is refused too
        anonymous = grpc.ssl_channel_credentials(root_certificates=certs["ca.pem"].read_bytes())
        with grpc.secure_channel(receiver.grpc_endpoint, anonymous) as channel:
            call = channel.unary_unary(
                "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
                request_serializer=None,
                response_deserializer=None,
            )
            with pytest.raises(grpc.RpcError) as refused:
                call(b"", timeout=10)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    (count,) = (
        duckdb.connect().execute(f"SELECT count(*) FROM read_parquet('{data_dir}/spans/date=*/*.parquet')").fetchone()
    )
    assert count == 2 * len(EXPECTED)
