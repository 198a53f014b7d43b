"""Live cost metrics (collector_ext/traces/cost_meter.py) against `analyze cost` over the same spans.

The loadgen workload (real OTel SDK, real gRPC exporter) into a real receiver run with a price file and a
small agent limit, plus one call reported a second time in another trace (an instrumentation and the SDK's
own tracing: the same response id). Once the receiver holds no trace, its /metrics are read; after it
stopped, `analyze cost --format json` reads the Parquet it wrote. Per group the figures are equal (the
float nearest the same exact sum), over every label the sums are equal, and the agents past the limit are
exactly the `other` series.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

import pytest
from framework_calls import FRAMEWORK_CALLS
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from prometheus_client.parser import text_string_to_metric_families
from receiver_process import ReceiverProcess

from collector_ext.demo.loadgen import CallRecord, WorkloadSpec, llm_span_attributes, make_exporter, run_workload

pytestmark = pytest.mark.slow

START = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
PRICES = """\
prices:
  - provider: openai
    pattern: "gpt-4o-mini.*"
    discount_percent: 20
  - provider: anthropic
    model: claude-haiku-4-5-20251001
    input: 0.9
    output: 4.5
    cache_read: 0.09
"""
TOP_AGENTS = 4
FIGURES = {
    "agentmeter_genai_calls": "llm_calls",
    "agentmeter_genai_cost_usd": "token_cost_usd",
    "agentmeter_genai_unpriced_calls": "unpriced_calls",
}
TOKEN_FIGURES = {t: f"{t}_tokens" for t in ("input", "output", "cache_read", "cache_write", "reasoning")}


def metric_rows(text: str) -> dict[tuple[str, str, str, str], dict[str, float]]:
    """(agent, model, provider, namespace) -> the analyzer's figure names -> value."""
    rows: dict[tuple[str, str, str, str], dict[str, float]] = defaultdict(dict)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if not sample.name.endswith("_total"):
                continue
            name = sample.name.removesuffix("_total")
            labels = sample.labels
            key = (labels.get("agent"), labels.get("model"), labels.get("provider"), labels.get("namespace"))
            if name in FIGURES:
                rows[key][FIGURES[name]] = sample.value
            elif name == "agentmeter_genai_tokens":
                rows[key][TOKEN_FIGURES[labels["type"]]] = sample.value
    return dict(rows)


def send_again(endpoint: str, call: CallRecord) -> None:
    """A call reported again in a trace of its own (the SDK's own tracing beside an instrumentation): the
    same response id, model and usage, on the agent's own service."""
    resource = Resource.create({"service.name": call.agent, "k8s.namespace.name": call.namespace})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=endpoint, insecure=True)))
    name, kind, attributes = llm_span_attributes("genai", call.model, call.usage, call.response_id or "")
    start = int(START.timestamp() * 1e9) + 10**12
    span = provider.get_tracer("sdk").start_span(name, kind=kind, attributes=attributes, start_time=start)
    span.end(end_time=start + 10**9)
    provider.shutdown()


def send_framework_calls(endpoint: str) -> None:
    provider = TracerProvider(resource=Resource.create({"service.name": "framework-agent"}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=endpoint, insecure=True)))
    start = int(START.timestamp() * 1e9) + 2 * 10**12
    for n, attributes in enumerate(FRAMEWORK_CALLS):
        span = provider.get_tracer("sdk").start_span(
            "chat", attributes={"gen_ai.operation.name": "chat", **attributes}, start_time=start + n * 10**9
        )
        span.end(end_time=start + n * 10**9 + 10**8)
    provider.shutdown()


def wait_until_written(receiver: ReceiverProcess, spans: int) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        text = receiver.metrics_text()
        values = {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples if not s.labels}
        if values.get("agentmeter_traces_held") == 0 and values.get("agentmeter_spans_received_total", 0) >= spans:
            return text
        time.sleep(0.2)
    raise AssertionError("the receiver still holds traces after 60 s")


def analyze_cost(data_dir: Path, prices: Path, *by: str) -> list[dict]:
    args = [sys.executable, "-m", "analyzer.cli", "cost", "--data", str(data_dir), "--prices", str(prices)]
    args += [a for key in by for a in ("--by", key)] + ["--format", "json"]
    done = subprocess.run(args, capture_output=True, text=True, timeout=120, check=True)
    return json.loads(done.stdout)


def test_cost_metrics_equal_analyze_cost(tmp_path: Path) -> None:
    prices = tmp_path / "prices.yaml"
    prices.write_text(PRICES)
    data = tmp_path / "data"
    with ReceiverProcess(data, "--prices", str(prices), "--metrics-top-agents", str(TOP_AGENTS)) as receiver:
        result = run_workload(
            WorkloadSpec(tasks=30, seed=5, start=START), lambda: make_exporter(receiver.grpc_endpoint)
        )
        again = [c for c in result.calls if c.response_id and c.model.provider == "openai"][:3]
        assert len(again) == 3
        for call in again:
            send_again(receiver.grpc_endpoint, call)
        send_framework_calls(receiver.grpc_endpoint)
        metrics = metric_rows(wait_until_written(receiver, result.spans_sent + len(again) + len(FRAMEWORK_CALLS)))

    series = {key: row for key, row in metrics.items() if "llm_calls" in row}
    totals = analyze_cost(data, prices)[0]
    # every figure summed over the labels is the analyzer's total
    for figure in (*FIGURES.values(), *TOKEN_FIGURES.values()):
        summed = sum(row[figure] for row in series.values())
        assert summed == pytest.approx(float(totals[figure] or 0), rel=1e-12, abs=0), figure
    # the calls sent again: once
    assert totals["llm_calls"] == result.total().llm_calls + len(FRAMEWORK_CALLS) == len(result.calls) + 3
    assert totals["unpriced_calls"] > 0 and totals["token_cost_usd"] > 0  # the vLLM model has no price

    # per model, provider and namespace: equal, figure by figure
    by_model: dict[tuple, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for (_, model, provider, namespace), row in series.items():
        for figure, value in row.items():
            by_model[(model or None, provider or None, namespace or None)][figure] += value
    expected = {
        (r["model"], r["provider"], r["namespace"]): r
        for r in analyze_cost(data, prices, "model", "provider", "namespace")
    }
    assert set(by_model) == set(expected)
    assert {("gpt-4.1", "openai"), ("gpt-4o-mini", "openai"), ("gpt-audio", "openai")} <= {k[:2] for k in expected}
    for key, row in by_model.items():
        for figure, value in row.items():
            assert value == pytest.approx(float(expected[key][figure] or 0), rel=1e-12, abs=0), (key, figure)

    # per agent: the first TOP_AGENTS agents keep their names, the rest are exactly `other`
    by_agent: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for (agent, *_), row in series.items():
        for figure, value in row.items():
            by_agent[agent][figure] += value
    agents = {r["agent"]: r for r in analyze_cost(data, prices, "agent")}
    named = set(by_agent) - {"other"}
    assert len(named) == TOP_AGENTS and named < set(agents)
    for agent in named:
        assert by_agent[agent]["token_cost_usd"] == pytest.approx(
            float(agents[agent]["token_cost_usd"] or 0), rel=1e-12
        )
        assert by_agent[agent]["input_tokens"] == agents[agent]["input_tokens"]
    rest = [row for agent, row in agents.items() if agent not in named]
    assert by_agent["other"]["llm_calls"] == sum(r["llm_calls"] for r in rest)
    assert by_agent["other"]["output_tokens"] == sum(r["output_tokens"] for r in rest)
