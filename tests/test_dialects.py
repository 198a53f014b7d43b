"""Dialect by dialect: spans made by the real OpenTelemetry SDK, encoded by the real OTLP encoder, then
attributes_to_dict + normalize. Every test asserts the exact canonical columns."""

from __future__ import annotations

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from collector_ext.decode.dialects import COLUMNS, InvalidSpan, Normalized, normalize, normalize_provider
from collector_ext.decode.otlp_values import any_value_to_python, attribute_map, attributes_to_dict
from collector_ext.schema import MODALITY_COLUMNS

EXPORTER = InMemorySpanExporter()
PROVIDER = TracerProvider()
PROVIDER.add_span_processor(SimpleSpanProcessor(EXPORTER))
TRACER = PROVIDER.get_tracer("agentmeter.tests.dialects")


def otlp_span(name: str, attributes: dict, kind: SpanKind = SpanKind.INTERNAL):
    """One span through the real SDK and the real OTLP protobuf encoder."""
    EXPORTER.clear()
    with TRACER.start_as_current_span(name, kind=kind, attributes=attributes):
        pass
    (finished,) = EXPORTER.get_finished_spans()
    request = encode_spans([finished])
    return request.resource_spans[0].scope_spans[0].spans[0]


def run(name: str, attributes: dict, kind: SpanKind = SpanKind.INTERNAL) -> Normalized:
    span = otlp_span(name, attributes, kind)
    return normalize(span.name, span.kind, attributes_to_dict(span.attributes))


def columns(**given: object) -> dict[str, object]:
    """The full column dict: everything None unless given."""
    expected = dict.fromkeys(COLUMNS)
    expected.update(given)
    return expected


# ---- otlp_values ----


def test_attributes_to_dict_from_the_real_sdk() -> None:
    span = otlp_span(
        "values",
        {
            "s": "text",
            "b": True,
            "i": -7,
            "f": 0.25,
            "raw": b"\x00\xff",
            "strs": ["a", "b"],
            "ints": [1, 2],
            "bools": [False, True],
            "floats": [1.5],
        },
    )
    assert attributes_to_dict(span.attributes) == {
        "s": "text",
        "b": True,
        "i": -7,
        "f": 0.25,
        "raw": b"\x00\xff",
        "strs": ["a", "b"],
        "ints": [1, 2],
        "bools": [False, True],
        "floats": [1.5],
    }


def test_nested_and_empty_any_values() -> None:
    nested = AnyValue(
        kvlist_value=KeyValueList(
            values=[
                KeyValue(key="k", value=AnyValue(array_value=ArrayValue(values=[AnyValue(int_value=1), AnyValue()]))),
                KeyValue(key="bin", value=AnyValue(bytes_value=b"\x01\x02")),
            ]
        )
    )
    assert any_value_to_python(nested) == {"k": [1, None], "bin": b"\x01\x02"}
    assert any_value_to_python(AnyValue()) is None
    repeated = [KeyValue(key="x", value=AnyValue(int_value=1)), KeyValue(key="x", value=AnyValue(int_value=2))]
    assert attributes_to_dict(repeated) == {"x": 2}


def test_attribute_map_stringifies() -> None:
    assert attribute_map(
        {
            "s": "text",
            "t": True,
            "f": False,
            "i": 42,
            "neg": -1,
            "x": 0.1,
            "big": 1e300,
            "raw": b"\x00\xff",
            "list": ["a", 1, True, None, b"\x10"],
            "dict": {"k": [1.5, "é"]},
            "none": None,
        }
    ) == {
        "s": "text",
        "t": "true",
        "f": "false",
        "i": "42",
        "neg": "-1",
        "x": "0.1",
        "big": "1e+300",
        "raw": "00ff",
        "list": '["a",1,true,null,"10"]',
        "dict": '{"k":[1.5,"é"]}',
    }


# ---- OTel GenAI semantic conventions ----


def test_otel_genai_current() -> None:
    result = run(
        "chat gpt-4o-mini",
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4o-mini",
            "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
            "gen_ai.response.id": "chatcmpl-1",
            "gen_ai.conversation.id": "conv-9",
            "gen_ai.agent.name": "planner",
            "gen_ai.agent.id": "agent-7",
            "gen_ai.usage.input_tokens": 1200,
            "gen_ai.usage.output_tokens": 300,
            "gen_ai.usage.cache_read.input_tokens": 1000,
            "gen_ai.usage.cache_creation.input_tokens": 100,
            "gen_ai.usage.reasoning.output_tokens": 50,
            "gen_ai.usage.cost": 0.0123,
            "server.address": "api.openai.com",
        },
        SpanKind.CLIENT,
    )
    assert result.columns == columns(
        category="llm",
        operation="chat",
        provider="openai",
        request_model="gpt-4o-mini",
        response_model="gpt-4o-mini-2024-07-18",
        response_id="chatcmpl-1",
        conversation_id="conv-9",
        agent_name="planner",
        agent_id="agent-7",
        dialect="otel_genai",
        input_tokens=1200,
        output_tokens=300,
        cache_read_tokens=1000,
        cache_write_tokens=100,
        reasoning_tokens=50,
        reported_cost_usd=0.0123,
    )
    assert result.consumed == {
        "gen_ai.operation.name",
        "gen_ai.provider.name",
        "gen_ai.request.model",
        "gen_ai.response.model",
        "gen_ai.response.id",
        "gen_ai.conversation.id",
        "gen_ai.agent.name",
        "gen_ai.agent.id",
        "gen_ai.usage.input_tokens",
        "gen_ai.usage.output_tokens",
        "gen_ai.usage.cache_read.input_tokens",
        "gen_ai.usage.cache_creation.input_tokens",
        "gen_ai.usage.reasoning.output_tokens",
        "gen_ai.usage.cost",
    }


def test_anthropic_sdk_native_cache_write_spelling() -> None:
    result = run(
        "anthropic.messages.create",
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "anthropic",
            "gen_ai.usage.input_tokens": 5179,
            "gen_ai.usage.cache_read.input_tokens": 4566,
            "gen_ai.usage.cache_write.input_tokens": 559,
            "gen_ai.usage.output_tokens": 154,
        },
        SpanKind.CLIENT,
    )
    # input already includes cache (4566 + 559 <= 5179): not added again
    assert (result.columns["input_tokens"], result.columns["cache_write_tokens"]) == (5179, 559)
    assert "gen_ai.usage.cache_write.input_tokens" in result.consumed


def test_otel_genai_deprecated_names() -> None:
    result = run(
        "chat",
        {
            "gen_ai.system": "openai",
            "gen_ai.operation.name": "text_completion",
            "gen_ai.request.model": "gpt-3.5-turbo-instruct",
            "gen_ai.usage.prompt_tokens": 40,
            "gen_ai.usage.completion_tokens": 9,
            "gen_ai.usage.cache_read_input_tokens": 8,
            "gen_ai.usage.cache_creation_input_tokens": 2,
            "gen_ai.usage.reasoning_tokens": 3,
        },
    )
    assert result.columns == columns(
        category="llm",
        operation="text_completion",
        provider="openai",
        request_model="gpt-3.5-turbo-instruct",
        dialect="otel_genai",
        input_tokens=40,
        output_tokens=9,
        cache_read_tokens=8,
        cache_write_tokens=2,
        reasoning_tokens=3,
    )


def test_exclusive_cache_is_added_to_input() -> None:
    """An emitter that reports raw Anthropic input (cache excluded): cache_read + cache_write > input."""
    result = run(
        "chat claude",
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.usage.input_tokens": 30,
            "gen_ai.usage.cache_read.input_tokens": 4326,
            "gen_ai.usage.cache_creation.input_tokens": 535,
            "gen_ai.usage.output_tokens": 10,
            "gen_ai.usage.reasoning.output_tokens": 50,
        },
    )
    got = {k: result.columns[k] for k in ("input_tokens", "output_tokens", "cache_read_tokens", "reasoning_tokens")}
    assert got == {"input_tokens": 4891, "output_tokens": 60, "cache_read_tokens": 4326, "reasoning_tokens": 50}
    # the adjusted raw values stay in the attributes map
    assert "gen_ai.usage.input_tokens" not in result.consumed
    assert "gen_ai.usage.output_tokens" not in result.consumed
    assert "gen_ai.usage.cache_read.input_tokens" in result.consumed


@pytest.mark.parametrize(
    ("operation", "category"),
    [
        ("chat", "llm"),
        ("text_completion", "llm"),
        ("generate_content", "llm"),
        ("embeddings", "embedding"),
        ("retrieval", "retrieval"),
        ("invoke_agent", "agent"),
        ("create_agent", "agent"),
        ("execute_tool", "tool"),
        ("invoke_workflow", "other"),
        ("something_new", "other"),
    ],
)
def test_semconv_operations(operation: str, category: str) -> None:
    result = run(f"{operation} x", {"gen_ai.operation.name": operation})
    assert (result.columns["category"], result.columns["operation"]) == (category, operation)


def test_execute_tool_name() -> None:
    result = run(
        "execute_tool get_weather", {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "get_weather"}
    )
    assert result.columns == columns(
        category="tool", operation="execute_tool", tool_name="get_weather", dialect="otel_genai"
    )


# ---- OpenInference ----


def test_openinference_llm() -> None:
    result = run(
        "ChatCompletion",
        {
            "openinference.span.kind": "LLM",
            "llm.system": "openai",
            "llm.provider": "azure",
            "llm.model_name": "gpt-4o-2024-08-06",
            "llm.invocation_parameters": '{"model": "gpt-4o", "temperature": 0.2}',
            "llm.token_count.prompt": 3088,
            "llm.token_count.completion": 256,
            "llm.token_count.total": 3344,
            "llm.token_count.prompt_details.cache_read": 1024,
            "llm.token_count.prompt_details.cache_write": 0,
            "llm.token_count.completion_details.reasoning": 136,
            "llm.cost.total": 0.5,
            "session.id": "sess-1",
            "output.mime_type": "application/json",
            "output.value": '{"id": "chatcmpl-42", "model": "gpt-4o-2024-08-06", "choices": []}',
        },
    )
    assert result.columns == columns(
        category="llm",
        operation="chat",
        provider="azure.ai.openai",
        request_model="gpt-4o",
        response_model="gpt-4o-2024-08-06",
        response_id="chatcmpl-42",
        conversation_id="sess-1",
        dialect="openinference",
        input_tokens=3088,
        output_tokens=256,
        cache_read_tokens=1024,
        cache_write_tokens=0,
        reasoning_tokens=136,
        reported_cost_usd=0.5,
    )
    assert result.consumed == {
        "llm.model_name",
        "llm.token_count.prompt",
        "llm.token_count.completion",
        "llm.token_count.prompt_details.cache_read",
        "llm.token_count.prompt_details.cache_write",
        "llm.token_count.completion_details.reasoning",
        "llm.cost.total",
        "session.id",
    }


def test_openinference_agents_model_name_is_the_request_alias() -> None:
    result = run(
        "generation",
        {"openinference.span.kind": "LLM", "llm.system": "openai", "llm.model_name": "gpt-4o-mini"},
    )
    assert (result.columns["request_model"], result.columns["response_model"]) == ("gpt-4o-mini", None)


def test_openinference_own_keys_outrank_its_gen_ai_mapping() -> None:
    """OPENINFERENCE_ENABLE_GENAI_SEMCONV writes the dated response model into gen_ai.request.model."""
    result = run(
        "messages.create",
        {
            "openinference.span.kind": "LLM",
            "llm.request.model_name": "claude-sonnet-4-5",
            "llm.response.model_name": "claude-sonnet-4-5-20250929",
            "gen_ai.request.model": "claude-sonnet-4-5-20250929",
            "gen_ai.response.model": "claude-sonnet-4-5-20250929",
            "gen_ai.response.id": "msg_1",
        },
    )
    got = (result.columns["request_model"], result.columns["response_model"], result.columns["response_id"])
    assert got == ("claude-sonnet-4-5", "claude-sonnet-4-5-20250929", "msg_1")
    assert "gen_ai.request.model" not in result.consumed  # lost to llm.request.model_name: kept in the map
    assert "llm.request.model_name" in result.consumed


@pytest.mark.parametrize(
    ("kind", "category", "operation"),
    [
        ("LLM", "llm", "chat"),
        ("EMBEDDING", "embedding", "embeddings"),
        ("TOOL", "tool", "execute_tool"),
        ("RETRIEVER", "retrieval", "retrieval"),
        ("RERANKER", "retrieval", "retrieval"),
        ("AGENT", "agent", "invoke_agent"),
        ("CHAIN", "other", None),
        ("GUARDRAIL", "other", None),
        ("agent", "agent", "invoke_agent"),
    ],
)
def test_openinference_span_kinds(kind: str, category: str, operation: str | None) -> None:
    result = run("step", {"openinference.span.kind": kind, "agent.name": "a1", "tool.name": "t1"})
    assert result.columns == columns(
        category=category, operation=operation, agent_name="a1", tool_name="t1", dialect="openinference"
    )
    assert "openinference.span.kind" not in result.consumed


# ---- OpenLLMetry / Traceloop ----


def test_traceloop_legacy_llm() -> None:
    result = run(
        "openai.chat",
        {
            "llm.request.type": "chat",
            "gen_ai.system": "OpenAI",
            "gen_ai.request.model": "gpt-4o-mini",
            "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
            "gen_ai.response.id": "chatcmpl-fake0063",
            "llm.usage.total_tokens": 1922,
            "gen_ai.usage.completion_tokens": 229,
            "gen_ai.usage.prompt_tokens": 1693,
            "gen_ai.usage.cache_read_input_tokens": 0,
            "llm.is_streaming": False,
        },
        SpanKind.CLIENT,
    )
    assert result.columns == columns(
        category="llm",
        operation="chat",
        provider="openai",
        request_model="gpt-4o-mini",
        response_model="gpt-4o-mini-2024-07-18",
        response_id="chatcmpl-fake0063",
        dialect="traceloop",
        input_tokens=1693,
        output_tokens=229,
        cache_read_tokens=0,
    )
    assert "gen_ai.system" not in result.consumed  # "OpenAI" was normalized: the raw value stays in the map
    assert "llm.usage.total_tokens" not in result.consumed


def test_traceloop_completion_request_type() -> None:
    result = run("anthropic.chat", {"llm.request.type": "completion", "gen_ai.system": "Anthropic"})
    assert (result.columns["category"], result.columns["operation"], result.columns["provider"]) == (
        "llm",
        "text_completion",
        "anthropic",
    )


def test_traceloop_streaming_zeros_are_unknown_usage() -> None:
    """0.40.14 messages.stream(): explicit zeros and no response model mean the usage was never read."""
    result = run(
        "anthropic.chat",
        {
            "gen_ai.system": "Anthropic",
            "llm.request.type": "completion",
            "gen_ai.request.model": "claude-sonnet-4-5",
            "gen_ai.usage.prompt_tokens": 0,
            "gen_ai.usage.completion_tokens": 0,
            "llm.usage.total_tokens": 0,
            "gen_ai.usage.cache_read_input_tokens": 0,
            "gen_ai.usage.cache_creation_input_tokens": 0,
        },
    )
    assert [result.columns[c] for c in ("input_tokens", "output_tokens", "cache_read_tokens")] == [None, None, None]
    assert "gen_ai.usage.prompt_tokens" not in result.consumed


def test_zero_usage_with_a_response_model_is_zero() -> None:
    result = run(
        "chat",
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.response.model": "m-1",
            "gen_ai.usage.input_tokens": 0,
            "gen_ai.usage.output_tokens": 0,
        },
    )
    assert (result.columns["input_tokens"], result.columns["output_tokens"]) == (0, 0)


@pytest.mark.parametrize(
    ("kind", "category", "agent_name", "tool_name"),
    [
        ("workflow", "other", None, None),
        ("task", "other", None, None),
        ("agent", "agent", "researcher", None),
        ("tool", "tool", None, "researcher"),
    ],
)
def test_traceloop_span_kinds(kind: str, category: str, agent_name: str | None, tool_name: str | None) -> None:
    result = run(f"researcher.{kind}", {"traceloop.span.kind": kind, "traceloop.entity.name": "researcher"})
    assert result.columns == columns(
        category=category,
        operation={"agent": "invoke_agent", "tool": "execute_tool"}.get(kind),
        agent_name=agent_name,
        tool_name=tool_name,
        dialect="traceloop",
    )
    assert ("traceloop.entity.name" in result.consumed) == (kind in ("agent", "tool"))


# ---- Vercel AI SDK ----


def test_vercel_v4_do_generate() -> None:
    result = run(
        "ai.generateText.doGenerate",
        {
            "ai.operationId": "ai.generateText.doGenerate",
            "ai.model.id": "gpt-4o",
            "ai.model.provider": "openai.chat",
            "ai.response.model": "gpt-4o-2024-08-06",
            "ai.response.id": "chatcmpl-v4",
            "ai.usage.promptTokens": 120,
            "ai.usage.completionTokens": 30,
            "ai.telemetry.functionId": "support-bot",
        },
        SpanKind.CLIENT,
    )
    assert result.columns == columns(
        category="llm",
        operation="chat",
        provider="openai",
        request_model="gpt-4o",
        response_model="gpt-4o-2024-08-06",
        response_id="chatcmpl-v4",
        agent_name="support-bot",
        dialect="vercel_ai",
        input_tokens=120,
        output_tokens=30,
    )
    assert "ai.model.provider" not in result.consumed  # "openai.chat" -> openai: the raw id stays
    assert "ai.telemetry.functionId" not in result.consumed


def test_vercel_v5_do_stream() -> None:
    result = run(
        "ai.streamText.doStream",
        {
            "ai.model.id": "claude-sonnet-4-5",
            "ai.model.provider": "anthropic.messages",
            "ai.usage.inputTokens": 900,
            "ai.usage.outputTokens": 80,
            "ai.usage.totalTokens": 980,
            "ai.usage.cachedInputTokens": 600,
            "ai.usage.reasoningTokens": 20,
        },
    )
    got = {c: result.columns[c] for c in ("category", "provider", "input_tokens", "output_tokens")}
    assert got == {"category": "llm", "provider": "anthropic", "input_tokens": 900, "output_tokens": 80}
    assert (result.columns["cache_read_tokens"], result.columns["reasoning_tokens"]) == (600, 20)


def test_vercel_outer_span_is_a_wrapper_with_its_rollup() -> None:
    result = run(
        "ai.generateText",
        {
            "ai.model.id": "gpt-4o",
            "ai.model.provider": "openai.chat",
            "ai.usage.promptTokens": 240,
            "ai.usage.completionTokens": 60,
        },
    )
    assert result.columns == columns(
        category="other",
        provider="openai",
        request_model="gpt-4o",
        dialect="vercel_ai",
        input_tokens=240,
        output_tokens=60,
    )


def test_vercel_embed_and_tool_call() -> None:
    embed = run("ai.embed.doEmbed", {"ai.model.id": "text-embedding-3-small", "ai.usage.tokens": 12})
    assert (embed.columns["category"], embed.columns["operation"], embed.columns["input_tokens"]) == (
        "embedding",
        "embeddings",
        12,
    )
    tool = run("ai.toolCall", {"ai.toolCall.name": "weather", "ai.toolCall.id": "call_1"})
    assert tool.columns == columns(category="tool", operation="execute_tool", tool_name="weather", dialect="vercel_ai")


# ---- the seed's span names ----


def test_seed_span_names() -> None:
    agent = run("agent.loop", {"gen_ai.agent.name": "orchestrator", "gen_ai.agent.id": "orc-1"})
    assert agent.columns == columns(
        category="agent", operation="invoke_agent", agent_name="orchestrator", agent_id="orc-1", dialect="otel_genai"
    )
    bare = run("agent.loop", {})
    assert bare.columns == columns(category="agent", operation="invoke_agent", dialect="span_name")
    chat = run("gen_ai.chat", {"gen_ai.request.model": "m", "gen_ai.usage.input_tokens": 5})
    assert (chat.columns["category"], chat.columns["input_tokens"]) == ("llm", 5)
    tool = run("mcp.tool.web_search", {})
    assert tool.columns == columns(
        category="tool", operation="execute_tool", tool_name="web_search", dialect="span_name"
    )
    mcp = run("mcp.tool.fetch", {"mcp.method.name": "tools/call", "mcp.tool.name": "fetch_url"})
    assert mcp.columns == columns(category="tool", operation="execute_tool", tool_name="fetch_url", dialect="span_name")
    assert mcp.consumed == {"mcp.tool.name"}


def test_plain_span_is_other_and_untouched() -> None:
    result = run("GET /health", {"http.request.method": "GET", "http.response.status_code": 200}, SpanKind.SERVER)
    assert result.columns == columns(category="other")
    assert result.consumed == frozenset()


# ---- providers ----


@pytest.mark.parametrize(
    ("raw", "provider"),
    [
        ("openai", "openai"),
        ("OpenAI", "openai"),
        ("openai.chat", "openai"),
        ("openai.responses", "openai"),
        ("Anthropic", "anthropic"),
        ("anthropic.messages", "anthropic"),
        ("AWS", "aws.bedrock"),
        ("amazon-bedrock", "aws.bedrock"),
        ("aws.bedrock", "aws.bedrock"),
        ("az.ai.openai", "azure.ai.openai"),
        ("azure-openai.chat", "azure.ai.openai"),
        ("azure.ai.inference", "azure.ai.inference"),
        ("vertex_ai", "gcp.vertex_ai"),
        ("VertexAI", "gcp.vertex_ai"),
        ("google.vertex.chat", "gcp.vertex_ai"),
        ("google.generative-ai", "gcp.gemini"),
        ("gemini", "gcp.gemini"),
        ("xai", "x_ai"),
        ("xai.chat", "x_ai"),
        ("MistralAI", "mistral_ai"),
        ("mistral.chat", "mistral_ai"),
        ("Watsonx", "ibm.watsonx.ai"),
        ("groq.chat", "groq"),
        ("Ollama", "ollama"),
        ("  ", None),
    ],
)
def test_provider_normalization(raw: str, provider: str | None) -> None:
    assert normalize_provider(raw) == provider


def test_provider_precedence() -> None:
    result = run("x", {"gen_ai.system": "OpenAI", "gen_ai.provider.name": "azure.ai.openai", "llm.provider": "azure"})
    assert result.columns["provider"] == "azure.ai.openai"
    assert result.consumed == {"gen_ai.provider.name"}


# ---- bad values ----


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        ("gen_ai.usage.input_tokens", -5, "gen_ai.usage.input_tokens=-5: token count is negative"),
        ("gen_ai.usage.output_tokens", 2.5, "gen_ai.usage.output_tokens=2.5: token count is not a whole number"),
        ("llm.token_count.prompt", "lots", "llm.token_count.prompt='lots': token count is not an integer"),
        ("llm.token_count.prompt", "-3", "llm.token_count.prompt='-3': token count is negative"),
        ("ai.usage.promptTokens", True, "ai.usage.promptTokens=True: token count is not an integer"),
        ("gen_ai.usage.prompt_tokens", [1, 2], "gen_ai.usage.prompt_tokens=[1, 2]: token count is not an integer"),
        ("llm.usage.total_tokens", float("nan"), "llm.usage.total_tokens=nan: token count is not a whole number"),
        ("llm.cost.total", -0.1, "llm.cost.total=-0.1: cost must be a finite number >= 0"),
        ("gen_ai.usage.cost", "cheap", "gen_ai.usage.cost='cheap': cost is not a number"),
    ],
)
def test_invalid_values_are_rejected_naming_the_attribute(key: str, value: object, reason: str) -> None:
    span = otlp_span("chat", {"gen_ai.operation.name": "chat", key: value})
    with pytest.raises(InvalidSpan) as caught:
        normalize(span.name, span.kind, attributes_to_dict(span.attributes))
    assert str(caught.value) == reason


def test_out_of_range_tokens_rejected() -> None:
    with pytest.raises(InvalidSpan, match=r"^gen_ai.usage.input_tokens='9223372036854775808': .*out of range"):
        normalize("chat", 3, {"gen_ai.usage.input_tokens": str(2**63)})
    with pytest.raises(InvalidSpan, match=r"^input_tokens=.*out of range after adding"):
        normalize(
            "chat",
            3,
            {
                "gen_ai.usage.input_tokens": 1,
                "gen_ai.usage.cache_read.input_tokens": 2**63 - 1,
                "gen_ai.usage.cache_creation.input_tokens": 1,
            },
        )


def test_numeric_strings_and_whole_floats_are_accepted() -> None:
    result = run(
        "chat",
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.usage.input_tokens": "42",
            "gen_ai.usage.output_tokens": 7.0,
            "llm.cost.total": "0.25",
        },
    )
    got = (result.columns["input_tokens"], result.columns["output_tokens"], result.columns["reported_cost_usd"])
    assert got == (42, 7, 0.25)


# ---- graph nodes (LangGraph through OpenInference's LangChain tracer) ----

# metadata as OpenInference writes it (the `metadata` attribute: LangChain's run metadata as JSON), copied from
# the LangGraph capture (tests/frameworks/captures/langgraph__openinference-langchain__chat)
ROOT_GRAPH = '{"ls_integration": "langgraph"}'
ROOT_NODE = (
    '{"ls_integration": "langgraph", "langgraph_step": 1, "langgraph_node": "agent", "langgraph_triggers": '
    '["branch:to:agent"], "langgraph_path": ["__pregel_pull", "agent"], "langgraph_checkpoint_ns": '
    '"agent:a9688b12-9ddf-50a5-eacf-79225646d6c2"}'
)
TOOLS_NODE_CONTEXT = (
    '{"ls_integration": "langgraph", "langgraph_step": 2, "langgraph_node": "tools", "langgraph_checkpoint_ns": '
    '"tools:59daf1ad-551b-9286-67a9-659e86439f40", "checkpoint_ns": "tools:59daf1ad-551b-9286-67a9-659e86439f40"}'
)
SUB_GRAPH_NODE = (
    '{"ls_integration": "langgraph", "langgraph_step": 1, "langgraph_node": "agent", "langgraph_checkpoint_ns": '
    '"tools:59daf1ad-551b-9286-67a9-659e86439f40|agent:6b33281a-e932-6834-9756-29232e09f22a"}'
)


@pytest.mark.parametrize(
    ("name", "kind", "metadata", "category", "graph_node"),
    [
        ("orchestrator", "CHAIN", ROOT_GRAPH, "other", None),  # the graph's run: no node of its own
        ("agent", "AGENT", ROOT_NODE, "agent", "agent"),  # a ReAct step: the node's own span
        ("call_model", "CHAIN", ROOT_NODE, "other", None),  # inside the node: same metadata, another name
        ("researcher", "CHAIN", TOOLS_NODE_CONTEXT, "other", None),  # a sub-graph called from the tools node
        ("research", "TOOL", TOOLS_NODE_CONTEXT, "tool", None),
        ("agent", "AGENT", SUB_GRAPH_NODE, "agent", "agent"),  # the sub-graph's step: its namespace's last task
        ("agent", "AGENT", TOOLS_NODE_CONTEXT, "agent", None),  # named "agent" inside the tools node: no node
        ("agent", "AGENT", "not json", "agent", None),
    ],
)
def test_langgraph_node_spans(name: str, kind: str, metadata: str, category: str, graph_node: str | None) -> None:
    result = run(name, {"openinference.span.kind": kind, "metadata": metadata})
    assert (result.columns["category"], result.columns["graph_node"]) == (category, graph_node)
    assert "metadata" not in result.consumed  # the whole metadata stays in the attributes map


# ---- counts per modality ----


def test_modality_counts_are_columns_and_parts_of_the_counts() -> None:
    result = run(
        "chat gpt-4o-audio-preview",
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.usage.input_tokens": 1000,
            "gen_ai.usage.output_tokens": 300,
            "gen_ai.usage.text.input_tokens": 600,
            "gen_ai.usage.audio.input_tokens": 300,
            "gen_ai.usage.image.input_tokens": 80,
            "gen_ai.usage.video.input_tokens": 20,
            "gen_ai.usage.text.output_tokens": 100,
            "gen_ai.usage.audio.output_tokens": 200,
        },
    )
    got = {k: result.columns[k] for k in ("input_tokens", "output_tokens", *MODALITY_COLUMNS)}
    assert got == {
        "input_tokens": 1000,
        "output_tokens": 300,
        "input_audio_tokens": 300,
        "input_image_tokens": 80,
        "input_video_tokens": 20,
        "output_audio_tokens": 200,
    }
    assert {"gen_ai.usage.audio.input_tokens", "gen_ai.usage.audio.output_tokens"} <= result.consumed
    assert "gen_ai.usage.text.input_tokens" not in result.consumed  # text is the rest: no column of its own


def test_modality_counts_alone_make_the_counts_and_never_exceed_them() -> None:
    alone = run("chat", {"gen_ai.operation.name": "chat", "gen_ai.usage.text.input_tokens": 70,
                         "gen_ai.usage.audio.input_tokens": 30, "gen_ai.usage.audio.output_tokens": 9})  # fmt: skip
    assert (alone.columns["input_tokens"], alone.columns["output_tokens"]) == (100, 9)
    # a total below the sum of its parts is not a total: the parts win
    short = run("chat", {"gen_ai.operation.name": "chat", "gen_ai.usage.input_tokens": 10,
                         "gen_ai.usage.audio.input_tokens": 30})  # fmt: skip
    assert (short.columns["input_tokens"], short.columns["input_audio_tokens"]) == (30, 30)


def test_openinference_audio_details() -> None:
    result = run(
        "ChatOpenAI",
        {
            "openinference.span.kind": "LLM",
            "llm.model_name": "gpt-4o-audio-preview",
            "llm.token_count.prompt": 500,
            "llm.token_count.completion": 120,
            "llm.token_count.prompt_details.audio": 200,
            "llm.token_count.completion_details.audio": 100,
        },
    )
    assert (result.columns["input_audio_tokens"], result.columns["output_audio_tokens"]) == (200, 100)
    assert {"llm.token_count.prompt_details.audio", "llm.token_count.completion_details.audio"} <= result.consumed


def test_unknown_usage_has_no_modality_parts() -> None:
    # a Traceloop stream whose usage was never read: every count zero, no response model: unknown, not zero
    result = run("openai.chat", {"traceloop.span.kind": "task", "llm.request.type": "chat",
                                 "gen_ai.usage.input_tokens": 0, "gen_ai.usage.audio.input_tokens": 0})  # fmt: skip
    assert [result.columns[k] for k in ("input_tokens", *MODALITY_COLUMNS)] == [None] * 5
