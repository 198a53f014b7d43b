"""Live counting per batch (the receiver's cost metrics and runaway watch read a batch of spans as columns):
the sums equal pricing and labelling every call one by one, on every corpus request and on calls as agent
frameworks report them (a framework as provider, LiteLLM's provider/model, audio and image tokens)."""

from __future__ import annotations

import random
from collections import defaultdict

from conftest import CORPUS
from framework_calls import FRAMEWORK_CALLS as SHARED_FRAMEWORK_CALLS
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from collector_ext.decode.batch import decode_request
from collector_ext.pricing.live import LivePrices
from collector_ext.pricing.rules import resolved_names
from collector_ext.schema import MODALITY_COLUMNS
from collector_ext.traces.cost_meter import CostMeter, LabelLimit, counted_calls
from collector_ext.traces.span_refs import SpanRef, row_table, span_refs
from collector_ext.traces.stitching import stitch_traces

RECEIVED = 1_800_000_000_000_000_000
# provider / model as frameworks send them, each shown as the provider that served the call (resolved_names),
# and the modality parts priced at a model's own prices: the live-metric test's calls, plus an image and a
# model no price list has
FRAMEWORK_CALLS = [
    *SHARED_FRAMEWORK_CALLS,
    {"gen_ai.provider.name": "gcp.gemini", "gen_ai.request.model": "gemini-2.5-flash",
     "gen_ai.usage.input_tokens": 12_000, "gen_ai.usage.output_tokens": 800, "gen_ai.usage.audio.input_tokens": 7000,
     "gen_ai.usage.image.input_tokens": 1000},
    {"gen_ai.provider.name": "langchain", "gen_ai.request.model": "no-such-model-anywhere",
     "gen_ai.usage.input_tokens": 10, "gen_ai.usage.output_tokens": 1},
]  # fmt: skip


def _framework_request() -> bytes:
    """Each framework call a few times, one trace per call (an agent span around it)."""
    spans = []
    for n in range(4 * len(FRAMEWORK_CALLS)):
        trace_id = (n + 1).to_bytes(16, "big")
        start = RECEIVED - 10**12 + n * 10**9
        attributes = {"gen_ai.operation.name": "chat", **FRAMEWORK_CALLS[n % len(FRAMEWORK_CALLS)]}
        agent = Span(trace_id=trace_id, span_id=b"\x01" * 8, name=f"invoke_agent agent-{n % 3}",
                     attributes=[_kv("gen_ai.operation.name", "invoke_agent"), _kv("gen_ai.agent.name", f"agent-{n % 3}")],
                     start_time_unix_nano=start, end_time_unix_nano=start + 10**8)  # fmt: skip
        call = Span(trace_id=trace_id, span_id=b"\x02" * 8, parent_span_id=b"\x01" * 8, name="chat",
                    kind=Span.SPAN_KIND_CLIENT, attributes=[_kv(k, v) for k, v in attributes.items()],
                    start_time_unix_nano=start + 1, end_time_unix_nano=start + 10**7)  # fmt: skip
        spans += [agent, call]
    resource = Resource(attributes=[_kv("service.name", "framework-agent"), _kv("k8s.namespace.name", "agents")])
    request = ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(resource=resource, scope_spans=[ScopeSpans(spans=spans)])]
    )
    return request.SerializeToString()


def _kv(key: str, value: str | int) -> KeyValue:
    return KeyValue(
        key=key, value=AnyValue(int_value=value) if isinstance(value, int) else AnyValue(string_value=value)
    )


def _corpus_calls() -> list[SpanRef]:
    refs: list[SpanRef] = []
    for body in [*(path.read_bytes() for path in sorted(CORPUS.glob("*.pb"))), _framework_request()]:
        refs.extend(span_refs(decode_request(body, RECEIVED).table))
    traces: dict[bytes, list[SpanRef]] = defaultdict(list)
    for ref in refs:
        traces[ref.trace_id].append(ref)
    return stitch_traces(list(traces.values()), keep="all")


def _one_by_one(spans: list[SpanRef], prices: LivePrices, top_agents: int, top_models: int) -> dict:
    """What the meter counts, a call at a time: its row read alone, priced alone, labelled in turn (as
    `analyze cost --by provider --by model` shows it)."""
    agents, models, others = LabelLimit(top_agents), LabelLimit(top_models), LabelLimit(100)
    namespaces = LabelLimit(100)
    sums: dict = defaultdict(lambda: [0, 0, 0, [0] * 5])
    for span in counted_calls(spans):
        row = row_table(
            [span],
            (
                "provider",
                "response_model",
                "request_model",
                "input_tokens",
                "output_tokens",
                "cache_read_tokens",
                "cache_write_tokens",
                "reasoning_tokens",
                *MODALITY_COLUMNS,
            ),
        )
        provider, response, request, *tokens = (row.column(i)[0].as_py() for i in range(row.num_columns))
        model = response or request
        counts = [t or 0 for t in tokens]
        shown_provider, shown_model = resolved_names(provider or "", model) if model is not None else (provider, None)
        key = (agents(span.agent_name), models(shown_model), others(shown_provider), namespaces(span.k8s_namespace))
        entry = sums[key]
        entry[0] += 1
        if not span.has_usage:
            continue
        cost = prices.cost(provider, model, span.start_time, *counts)
        entry[1] += cost is None
        entry[2] += cost or 0
        entry[3] = [a + b for a, b in zip(entry[3], counts[:5], strict=True)]
    return {key: (calls, unpriced, cost, tokens) for key, (calls, unpriced, cost, tokens) in sums.items()}


def test_the_meter_sums_a_batch_as_it_would_count_its_calls_one_by_one() -> None:
    spans = _corpus_calls()
    random.Random(7).shuffle(spans)  # spans of many requests, in no order: rows read back in the refs' order
    prices = LivePrices()
    for top_agents, top_models in ((1, 2), (100, 100)):
        meter = CostMeter(prices, top_agents=top_agents, top_models=top_models)
        for start in range(0, len(spans), 37):  # batches of any size, label limits filling up across them
            meter.count(spans[start : start + 37])
        counted = {key: (s.calls, s.unpriced, s.cost_units, list(s.tokens)) for key, s in meter._sums.items()}
        assert counted == _one_by_one(spans, prices, top_agents=top_agents, top_models=top_models)
    labels = {key[1:3] for key in counted}  # (model, provider) as analyze cost shows them
    assert {("gpt-4.1", "openai"), ("gpt-4o-mini", "openai"), ("gpt-audio", "openai")} <= labels
    assert ("no-such-model-anywhere", "langchain") not in labels  # a framework is never shown as the provider
    audio = sum(cost for (_, model, _, _), (_, _, cost, _) in counted.items() if model == "gpt-audio")
    text_only = prices.cost("openai", "gpt-audio", RECEIVED, 3000, 1200, 0, 0, 0)
    assert audio == 4 * prices.cost("openai", "gpt-audio", RECEIVED, 3000, 1200, 0, 0, 0, 2500, 0, 0, 1000)
    assert audio != 4 * text_only  # the audio parts at their own prices
    expected = _one_by_one(spans, prices, top_agents=1, top_models=2)
    assert sum(calls for calls, _, _, _ in expected.values()) == len(counted_calls(spans)) > 20
    assert any(key[1] == "other" for key in expected)  # the model limit was reached
    assert any(cost for _, _, cost, _ in expected.values())  # some calls are priced


def test_row_table_reads_rows_in_the_refs_order() -> None:
    spans = _corpus_calls()
    picked = random.Random(3).sample(spans, 40)
    table = row_table(picked, ("span_id", "trace_id"))
    assert list(zip(table.column("trace_id").to_pylist(), table.column("span_id").to_pylist(), strict=True)) == [
        (span.trace_id, span.span_id) for span in picked
    ]
