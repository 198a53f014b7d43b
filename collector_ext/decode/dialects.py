"""The ONE mapping from every GenAI telemetry dialect to the canonical columns of `schema.SPANS`.

Dialects: OTel GenAI semantic conventions (current and deprecated names), OpenInference (Arize), OpenLLMetry /
Traceloop (old and new), the Vercel AI SDK (v4 and v5), and our seed's span names (`agent.loop`, `gen_ai.chat`,
`mcp.tool.<name>`).

How it works: `_RULES` maps each attribute key we understand to (slot, rank, parser, dialect). `normalize`
walks the span's attributes once, does one dict lookup per key, and keeps for every slot the value of the
best-ranked key (lower rank wins). The slot values then become the columns:

* **Ranks** settle disagreements between dialects on one span. OpenInference's own keys outrank the
  `gen_ai.*` keys it adds with `OPENINFERENCE_ENABLE_GENAI_SEMCONV`, because that mapping writes the dated
  response model into `gen_ai.request.model`. Otherwise the current semconv names outrank everything.
* **Models.** OpenInference's `llm.model_name` is the response model in openinference-openai but the request
  alias in openinference-openai-agents. It fills `request_model` when no request model is known, and
  `response_model` only when it differs from the known request model (openinference-openai: the request
  alias comes from `llm.invocation_parameters`).
* **Response ids** de-duplicate one call reported twice (an instrumentation plus the SDK's own tracing,
  possibly in different traces). OpenInference without its gen_ai.* mapping carries the id only inside
  `output.value` (the response body as JSON): its top-level "id" is read for LLM / embedding spans.
* **Tokens** (semconv rule): input INCLUDES cache reads and writes; an emitter that reports them exclusively
  (cache_read + cache_write > input) gets them added. Output includes reasoning (added when
  reasoning > output). Every Anthropic instrumentation seen reports input with cache already included, and
  the rule leaves those untouched. A span whose token counts are all zero and that names no response model
  (Traceloop 0.40.14 `messages.stream()`) has unknown usage: None, not zero. Negative, fractional or
  non-numeric counts raise `InvalidSpan`; numeric strings ("42") are accepted. Counts per modality
  (`gen_ai.usage.{text,image,audio,video}.input_tokens`, `gen_ai.usage.{text,audio}.output_tokens`,
  OpenInference's `*_details.audio`) are parts of input / output: the input (output) is at least their sum,
  and the non-text parts are columns, priced at a model's own audio / image / video prices.
* **Wrapper spans** keep category "other" but keep their token numbers: OpenInference CHAIN, Traceloop
  workflow/task and the Vercel outer `ai.generateText` / `ai.streamText` / `ai.embed` ... spans (which repeat
  the summed usage of their `do*` children). `stitching.py` counts such a rollup only when the span has no
  inference descendant, so a lone wrapper still contributes and a wrapped call is not counted twice.
* **Names.** agent_name: `gen_ai.agent.name`, OpenInference `agent.name`, Traceloop `traceloop.entity.name` on
  an agent span, else Vercel's `ai.telemetry.functionId` (the app's name for the calling function; it is also
  kept in the attributes map). tool_name: `gen_ai.tool.name`, `tool.name`, `ai.toolCall.name`,
  `mcp.tool.name`, `traceloop.entity.name` on a tool span, else the `<name>` of a `mcp.tool.<name>` span.
  conversation_id: `gen_ai.conversation.id`, else OpenInference `session.id`. Agent spans without a name
  keep None: the fallback (span name, service name) is `stitching.py`'s.
* **Graph nodes.** LangGraph runs every node of a graph (each ReAct step of a prebuilt agent, which
  OpenInference marks AGENT because its name holds "agent") as a run named for the node, with
  `langgraph_node` and `langgraph_checkpoint_ns` in the run's metadata (OpenInference's `metadata` JSON,
  which the runs inside the node inherit). `graph_node` is set on the node's own span only; its parent span is
  the run of the graph (named for the graph: the agent's name), which stitching makes the agent run.
* **Consumed keys** are the keys whose raw value a typed column now holds unchanged; a key whose value was
  normalized (provider "OpenAI" -> "openai", input plus exclusive cache) or that lost to a better-ranked key
  stays in the attributes map, so nothing is lost.

`kind` (the OTLP span kind) is part of the seam but no rule needs it yet: every dialect names its span type.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from sys import intern

from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as gen_ai

from collector_ext.schema import (
    CATEGORY_AGENT,
    CATEGORY_EMBEDDING,
    CATEGORY_LLM,
    CATEGORY_OTHER,
    CATEGORY_RETRIEVAL,
    CATEGORY_TOOL,
    INFERENCE_CATEGORIES,
    MODALITY_COLUMNS,
)

INT64_MAX = 2**63 - 1
TOKEN_COLUMNS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens")
_MAX_OUTPUT_JSON = 1 << 20  # larger output.value bodies are not parsed for a response id

# `dialect` column values, in precedence order (a span mixing dialects is labelled with the first).
DIALECT_OPENINFERENCE = "openinference"
DIALECT_TRACELOOP = "traceloop"
DIALECT_VERCEL = "vercel_ai"
DIALECT_OTEL = "otel_genai"
DIALECT_SPAN_NAME = "span_name"  # recognised by the span name alone (agent.loop, gen_ai.chat, mcp.tool.*)
_DIALECTS = (DIALECT_OPENINFERENCE, DIALECT_TRACELOOP, DIALECT_VERCEL, DIALECT_OTEL)
_NO_DIALECT = len(_DIALECTS)

COLUMNS = (
    "category",
    "operation",
    "provider",
    "request_model",
    "response_model",
    "response_id",
    "tool_name",
    "conversation_id",
    "dialect",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "reported_cost_usd",
    "agent_name",
    "agent_id",
    "graph_node",
    *MODALITY_COLUMNS,
)


class InvalidSpan(ValueError):
    """A span whose GenAI attributes cannot be accepted; the message names the attribute and its value."""


@dataclass(slots=True)
class Normalized:
    columns: dict[str, object]
    consumed: frozenset[str]


# ---- value parsers: (key, raw value) -> parsed value, or None when the value carries nothing usable ----


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


_MAX_COUNT_DIGITS = len(str(INT64_MAX))


def _tokens(key: str, value: object) -> int | None:
    # `type(value) is` (not isinstance): a bool is not a count
    if type(value) is int:
        count = value
    elif type(value) is float:
        if not math.isfinite(value) or not value.is_integer():
            raise InvalidSpan(f"{key}={_shown(value)}: token count is not a whole number")
        count = int(value)
    elif type(value) is str:
        text = value.strip()
        digits = text[1:] if text[:1] == "-" else text
        if not (digits.isascii() and digits.isdigit()):
            raise InvalidSpan(f"{key}={_shown(value)}: token count is not an integer")
        if len(digits) > _MAX_COUNT_DIGITS and len(digits.lstrip("0")) > _MAX_COUNT_DIGITS:
            # before int(): past 4300 digits it raises ValueError, and a long string costs quadratic time
            raise InvalidSpan(f"{key}={_shown(value)}: token count is out of range")
        count = int(text)
    elif value is None:
        return None
    else:  # bool, bytes, list, dict
        raise InvalidSpan(f"{key}={_shown(value)}: token count is not an integer")
    if count < 0:
        raise InvalidSpan(f"{key}={_shown(value)}: token count is negative")
    if count > INT64_MAX:
        raise InvalidSpan(f"{key}={_shown(value)}: token count is out of range")
    return count


def _cost(key: str, value: object) -> float | None:
    if type(value) is int or type(value) is float:
        amount = float(value)
    elif type(value) is str:
        try:
            amount = float(value)
        except ValueError:
            raise InvalidSpan(f"{key}={_shown(value)}: cost is not a number") from None
    elif value is None:
        return None
    else:
        raise InvalidSpan(f"{key}={_shown(value)}: cost is not a number")
    if not math.isfinite(amount) or amount < 0:
        raise InvalidSpan(f"{key}={_shown(value)}: cost must be a finite number >= 0")
    return amount


def _text(key: str, value: object) -> str | None:
    if type(value) is str:
        return value or None
    if type(value) is int:
        return str(value)
    return None  # other types carry no usable name; the key stays in the attributes map


_INTERN_MAX_CHARS = 256


def _name(key: str, value: object) -> str | None:
    """`_text` for values that repeat across spans (models, operations, agent and tool names): interned, so
    that the receiver's trace buffer holds each distinct name once instead of once per span."""
    if type(value) is str:
        return intern(value) if 0 < len(value) <= _INTERN_MAX_CHARS else value or None
    return _text(key, value)


def _lower(key: str, value: object) -> str | None:
    return value.strip().lower() or None if type(value) is str else None


def _raw_text(key: str, value: object) -> str | None:
    return value if type(value) is str else None


def _invocation_model(key: str, value: object) -> str | None:
    """The request model inside OpenInference's `llm.invocation_parameters` JSON (small; bounded anyway)."""
    if type(value) is not str or len(value) > 65536 or '"model"' not in value:
        return None
    try:
        params = json.loads(value)
    except ValueError:
        return None
    model = params.get("model") if isinstance(params, dict) else None
    return model if isinstance(model, str) and model else None


def _graph_node(key: str, value: object) -> tuple[str, str | None] | None:
    """(node, checkpoint namespace) from OpenInference's `metadata` JSON (LangChain's run metadata) where
    LangGraph put its node there (langgraph/pregel/_algo.py `prepare_single_task`: `langgraph_node`, and
    `langgraph_checkpoint_ns` = the graph's namespace + `|<node>:<task id>`); bounded in size."""
    if type(value) is not str or len(value) > 65536 or '"langgraph_node"' not in value:
        return None
    try:
        metadata = json.loads(value)
    except ValueError:
        return None
    if not isinstance(metadata, dict):
        return None
    node, namespace = metadata.get("langgraph_node"), metadata.get("langgraph_checkpoint_ns")
    if not isinstance(node, str) or not node:
        return None
    return node, namespace if isinstance(namespace, str) else None


_INPUT_MODALITIES = ("text", "image", "audio", "video")
_OUTPUT_MODALITIES = ("text", "audio")


def _modality_slot(direction: str, modality: str) -> str:
    return f"{direction}_{modality}" if modality == "text" else f"{direction}_{modality}_tokens"


# ---- the table: attribute key -> (slot, rank, parser, dialect) ----

_OI, _TL, _VC, _OT = range(4)  # indexes into _DIALECTS
_WEAK = _NO_DIALECT  # generic keys (session.id, tool.name, ...) that do not tell the dialect

_Rule = tuple[str, int, Callable[[str, object], object], int]

_RULES: dict[str, _Rule] = {
    # span type markers (not consumed: category is a summary, the raw kind says more)
    "openinference.span.kind": ("oi_kind", 0, _lower, _OI),
    "traceloop.span.kind": ("tl_kind", 0, _lower, _TL),
    "llm.request.type": ("request_type", 0, _lower, _TL),
    gen_ai.GEN_AI_OPERATION_NAME: ("operation", 0, _name, _OT),
    # provider
    gen_ai.GEN_AI_PROVIDER_NAME: ("provider", 0, _text, _OT),
    "llm.provider": ("provider", 1, _text, _OI),
    gen_ai.GEN_AI_SYSTEM: ("provider", 2, _text, _OT),
    "llm.system": ("provider", 3, _text, _OI),
    "ai.model.provider": ("provider", 4, _text, _VC),
    # models
    "llm.request.model_name": ("request_model", 0, _name, _OI),
    "llm.invocation_parameters": ("request_model", 1, _invocation_model, _OI),
    gen_ai.GEN_AI_REQUEST_MODEL: ("request_model", 2, _name, _OT),
    "ai.model.id": ("request_model", 3, _name, _VC),
    "llm.response.model_name": ("response_model", 0, _name, _OI),
    gen_ai.GEN_AI_RESPONSE_MODEL: ("response_model", 1, _name, _OT),
    "ai.response.model": ("response_model", 2, _name, _VC),
    "llm.model_name": ("oi_model", 0, _name, _OI),
    gen_ai.GEN_AI_RESPONSE_ID: ("response_id", 0, _text, _OT),
    "ai.response.id": ("response_id", 1, _text, _VC),
    # identities
    gen_ai.GEN_AI_TOOL_NAME: ("tool_name", 0, _name, _OT),
    "tool.name": ("tool_name", 1, _name, _WEAK),
    "ai.toolCall.name": ("tool_name", 2, _name, _VC),
    "mcp.tool.name": ("tool_name", 3, _name, _WEAK),  # the seed's mcp.tool.<name> spans also carry it
    gen_ai.GEN_AI_AGENT_NAME: ("agent_name", 0, _name, _OT),
    "agent.name": ("agent_name", 1, _name, _WEAK),
    "traceloop.entity.name": ("entity_name", 0, _name, _TL),
    "ai.telemetry.functionId": ("function_id", 0, _name, _VC),
    gen_ai.GEN_AI_AGENT_ID: ("agent_id", 0, _text, _OT),
    gen_ai.GEN_AI_CONVERSATION_ID: ("conversation_id", 0, _text, _OT),
    "session.id": ("conversation_id", 1, _text, _WEAK),
    "output.value": ("oi_output", 0, _raw_text, _WEAK),
    "metadata": ("graph_node", 0, _graph_node, _WEAK),  # OpenInference LangChain: the run's metadata as JSON
    # tokens
    gen_ai.GEN_AI_USAGE_INPUT_TOKENS: ("input_tokens", 0, _tokens, _OT),
    "llm.token_count.prompt": ("input_tokens", 1, _tokens, _OI),
    gen_ai.GEN_AI_USAGE_PROMPT_TOKENS: ("input_tokens", 2, _tokens, _OT),
    "ai.usage.inputTokens": ("input_tokens", 3, _tokens, _VC),
    "ai.usage.promptTokens": ("input_tokens", 4, _tokens, _VC),
    "ai.usage.tokens": ("input_tokens", 5, _tokens, _VC),  # ai.embed / ai.embedMany
    gen_ai.GEN_AI_USAGE_OUTPUT_TOKENS: ("output_tokens", 0, _tokens, _OT),
    "llm.token_count.completion": ("output_tokens", 1, _tokens, _OI),
    gen_ai.GEN_AI_USAGE_COMPLETION_TOKENS: ("output_tokens", 2, _tokens, _OT),
    "ai.usage.outputTokens": ("output_tokens", 3, _tokens, _VC),
    "ai.usage.completionTokens": ("output_tokens", 4, _tokens, _VC),
    gen_ai.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: ("cache_read_tokens", 0, _tokens, _OT),
    "llm.token_count.prompt_details.cache_read": ("cache_read_tokens", 1, _tokens, _OI),
    "gen_ai.usage.cache_read_input_tokens": ("cache_read_tokens", 2, _tokens, _OT),
    "gen_ai.usage.details.cache_read_tokens": ("cache_read_tokens", 4, _tokens, _OT),  # pydantic-ai
    "ai.usage.cachedInputTokens": ("cache_read_tokens", 3, _tokens, _VC),
    gen_ai.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS: ("cache_write_tokens", 0, _tokens, _OT),
    "gen_ai.usage.cache_write.input_tokens": ("cache_write_tokens", 1, _tokens, _OT),  # anthropic SDK native
    "llm.token_count.prompt_details.cache_write": ("cache_write_tokens", 2, _tokens, _OI),
    "gen_ai.usage.cache_creation_input_tokens": ("cache_write_tokens", 3, _tokens, _OT),
    "gen_ai.usage.details.cache_write_tokens": ("cache_write_tokens", 4, _tokens, _OT),  # pydantic-ai
    "gen_ai.usage.cache_write_input_tokens": ("cache_write_tokens", 5, _tokens, _OT),  # strands-agents
    gen_ai.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS: ("reasoning_tokens", 0, _tokens, _OT),
    "llm.token_count.completion_details.reasoning": ("reasoning_tokens", 1, _tokens, _OI),
    "gen_ai.usage.reasoning_tokens": ("reasoning_tokens", 2, _tokens, _OT),
    "ai.usage.reasoningTokens": ("reasoning_tokens", 3, _tokens, _VC),
    "gen_ai.usage.details.reasoning_tokens": ("reasoning_tokens", 4, _tokens, _OT),  # pydantic-ai
    # counts per modality (parts of input / output): columns but text, which is the rest; they make the input /
    # output count when a span gives only them. OpenInference: OpenAI's prompt/completion_tokens_details.audio
    **{f"gen_ai.usage.{m}.input_tokens": (_modality_slot("input", m), 0, _tokens, _OT) for m in _INPUT_MODALITIES},
    **{f"gen_ai.usage.{m}.output_tokens": (_modality_slot("output", m), 0, _tokens, _OT) for m in _OUTPUT_MODALITIES},
    "llm.token_count.prompt_details.audio": ("input_audio_tokens", 1, _tokens, _OI),
    "llm.token_count.completion_details.audio": ("output_audio_tokens", 1, _tokens, _OI),
    # totals: validated and used to tell "all zero", never a column (they stay in the attributes map)
    "gen_ai.usage.total_tokens": ("total_tokens", 0, _tokens, _OT),
    "llm.token_count.total": ("total_tokens", 1, _tokens, _OI),
    "llm.usage.total_tokens": ("total_tokens", 2, _tokens, _TL),
    "ai.usage.totalTokens": ("total_tokens", 3, _tokens, _VC),
    # provider-reported cost
    "llm.cost.total": ("reported_cost_usd", 0, _cost, _OI),
    "gen_ai.usage.cost": ("reported_cost_usd", 1, _cost, _OT),
    "operation.cost": ("reported_cost_usd", 2, _cost, _WEAK),  # pydantic-ai (genai-prices at the client)
}
_MODALITY_SLOTS = {
    "input_tokens": tuple(_modality_slot("input", m) for m in _INPUT_MODALITIES),
    "output_tokens": tuple(_modality_slot("output", m) for m in _OUTPUT_MODALITIES),
}

# Slots that hold a column value as is.
_DIRECT_COLUMNS = (
    "request_model",
    "response_model",
    "response_id",
    "tool_name",
    "conversation_id",
    "agent_name",
    "agent_id",
    "reported_cost_usd",
    *MODALITY_COLUMNS,
)

# ---- category rules ----

_OP = gen_ai.GenAiOperationNameValues
_OPERATION_CATEGORY = {
    _OP.CHAT.value: CATEGORY_LLM,
    _OP.TEXT_COMPLETION.value: CATEGORY_LLM,
    _OP.GENERATE_CONTENT.value: CATEGORY_LLM,
    _OP.EMBEDDINGS.value: CATEGORY_EMBEDDING,
    _OP.RETRIEVAL.value: CATEGORY_RETRIEVAL,
    _OP.CREATE_AGENT.value: CATEGORY_AGENT,
    _OP.INVOKE_AGENT.value: CATEGORY_AGENT,
    _OP.EXECUTE_TOOL.value: CATEGORY_TOOL,
    _OP.INVOKE_WORKFLOW.value: CATEGORY_OTHER,  # a wrapper, like a Traceloop workflow
}
_OPENINFERENCE_CATEGORY = {
    "llm": CATEGORY_LLM,
    "embedding": CATEGORY_EMBEDDING,
    "tool": CATEGORY_TOOL,
    "retriever": CATEGORY_RETRIEVAL,
    "reranker": CATEGORY_RETRIEVAL,
    "agent": CATEGORY_AGENT,
    "chain": CATEGORY_OTHER,  # wrapper
    "guardrail": CATEGORY_OTHER,
    "evaluator": CATEGORY_OTHER,
    "prompt": CATEGORY_OTHER,
    "unknown": CATEGORY_OTHER,
}
_TRACELOOP_CATEGORY = {
    "agent": CATEGORY_AGENT,
    "tool": CATEGORY_TOOL,
    "workflow": CATEGORY_OTHER,  # wrapper
    "task": CATEGORY_OTHER,  # wrapper
}
_REQUEST_TYPE_CATEGORY = {
    "chat": CATEGORY_LLM,
    "completion": CATEGORY_LLM,
    "embedding": CATEGORY_EMBEDDING,
    "rerank": CATEGORY_RETRIEVAL,
}
_REQUEST_TYPE_OPERATION = {"chat": _OP.CHAT.value, "completion": _OP.TEXT_COMPLETION.value}

# span name -> (category, dialect). Vercel outer spans repeat their children's usage: wrappers ("other").
_NAME_CATEGORY: dict[str, tuple[str, str]] = {
    "agent.loop": (CATEGORY_AGENT, DIALECT_SPAN_NAME),
    "gen_ai.chat": (CATEGORY_LLM, DIALECT_SPAN_NAME),
    "ai.generateText.doGenerate": (CATEGORY_LLM, DIALECT_VERCEL),
    "ai.streamText.doStream": (CATEGORY_LLM, DIALECT_VERCEL),
    "ai.generateObject.doGenerate": (CATEGORY_LLM, DIALECT_VERCEL),
    "ai.streamObject.doStream": (CATEGORY_LLM, DIALECT_VERCEL),
    "ai.embed.doEmbed": (CATEGORY_EMBEDDING, DIALECT_VERCEL),
    "ai.embedMany.doEmbed": (CATEGORY_EMBEDDING, DIALECT_VERCEL),
    "ai.toolCall": (CATEGORY_TOOL, DIALECT_VERCEL),
    "ai.generateText": (CATEGORY_OTHER, DIALECT_VERCEL),
    "ai.streamText": (CATEGORY_OTHER, DIALECT_VERCEL),
    "ai.generateObject": (CATEGORY_OTHER, DIALECT_VERCEL),
    "ai.streamObject": (CATEGORY_OTHER, DIALECT_VERCEL),
    "ai.embed": (CATEGORY_OTHER, DIALECT_VERCEL),
    "ai.embedMany": (CATEGORY_OTHER, DIALECT_VERCEL),
}
MCP_TOOL_PREFIX = "mcp.tool."

# The semconv operation a category implies when the span does not name one.
_CATEGORY_OPERATION = {
    CATEGORY_AGENT: _OP.INVOKE_AGENT.value,
    CATEGORY_LLM: _OP.CHAT.value,
    CATEGORY_EMBEDDING: _OP.EMBEDDINGS.value,
    CATEGORY_TOOL: _OP.EXECUTE_TOOL.value,
    CATEGORY_RETRIEVAL: _OP.RETRIEVAL.value,
}

# ---- providers: normalized to the semconv well-known `gen_ai.provider.name` values ----

_PROVIDER = gen_ai.GenAiProviderNameValues
_PROVIDER_ALIASES: dict[str, str] = {p.value: p.value for p in _PROVIDER}
_PROVIDER_ALIASES.update(
    {
        # deprecated gen_ai.system values, OpenInference llm.provider/llm.system, Traceloop, Vercel provider ids
        "azure": _PROVIDER.AZURE_AI_OPENAI.value,
        "azure_openai": _PROVIDER.AZURE_AI_OPENAI.value,
        "azure-openai": _PROVIDER.AZURE_AI_OPENAI.value,
        "azure.openai": _PROVIDER.AZURE_AI_OPENAI.value,
        "az.ai.openai": _PROVIDER.AZURE_AI_OPENAI.value,
        "az.ai.inference": _PROVIDER.AZURE_AI_INFERENCE.value,
        "aws": _PROVIDER.AWS_BEDROCK.value,
        "bedrock": _PROVIDER.AWS_BEDROCK.value,
        "aws_bedrock": _PROVIDER.AWS_BEDROCK.value,
        "aws-bedrock": _PROVIDER.AWS_BEDROCK.value,
        "amazon-bedrock": _PROVIDER.AWS_BEDROCK.value,
        "amazon_bedrock": _PROVIDER.AWS_BEDROCK.value,
        "google": _PROVIDER.GCP_GEN_AI.value,  # AI Studio or Vertex: not said
        "gemini": _PROVIDER.GCP_GEMINI.value,
        "google.generative-ai": _PROVIDER.GCP_GEMINI.value,
        "google-generative-ai": _PROVIDER.GCP_GEMINI.value,
        "google_genai": _PROVIDER.GCP_GEN_AI.value,
        "vertex_ai": _PROVIDER.GCP_VERTEX_AI.value,
        "vertexai": _PROVIDER.GCP_VERTEX_AI.value,
        "vertex": _PROVIDER.GCP_VERTEX_AI.value,
        "google.vertex": _PROVIDER.GCP_VERTEX_AI.value,
        "google-vertex": _PROVIDER.GCP_VERTEX_AI.value,
        "xai": _PROVIDER.X_AI.value,
        "x-ai": _PROVIDER.X_AI.value,
        "mistral": _PROVIDER.MISTRAL_AI.value,
        "mistralai": _PROVIDER.MISTRAL_AI.value,
        "mistral-ai": _PROVIDER.MISTRAL_AI.value,
        "watsonx": _PROVIDER.IBM_WATSONX_AI.value,
        "ibm": _PROVIDER.IBM_WATSONX_AI.value,
        "ibm_watsonx_ai": _PROVIDER.IBM_WATSONX_AI.value,
    }
)


@lru_cache(maxsize=4096)
def normalize_provider(value: str) -> str | None:
    """Lower-case, then the semconv well-known name: exact alias first, else the longest known dotted prefix
    ("openai.chat" -> openai, "google.vertex.chat" -> gcp.vertex_ai); unknown providers pass lower-cased."""
    text = value.strip().lower()
    if not text:
        return None
    known = _PROVIDER_ALIASES.get(text)
    if known is not None:
        return known
    parts = text.split(".")
    for end in range(len(parts) - 1, 0, -1):
        known = _PROVIDER_ALIASES.get(".".join(parts[:end]))
        if known is not None:
            return known
    return text


# ---- normalize ----


def normalize(name: str, kind: int, attributes: dict[str, object]) -> Normalized:
    """Canonical GenAI columns of one span; raises InvalidSpan for unacceptable token or cost values."""
    columns = _NO_COLUMNS.copy()
    consumed = normalize_into(columns, name, kind, attributes)
    return Normalized(columns, consumed)


_NO_COLUMNS: dict[str, object] = dict.fromkeys(COLUMNS)


def normalize_into(columns: dict[str, object], name: str, kind: int, attributes: dict[str, object]) -> frozenset[str]:
    """`normalize` writing the columns into `columns` (which holds every key of COLUMNS, None-valued, and no
    other key of a slot name): the decoder passes its row and saves a dict per span. Returns the consumed keys.
    """
    found: dict[str, tuple[int, str, object]] = {}  # slot -> (rank, key, parsed value)
    dialect = _NO_DIALECT
    rules = _RULES
    for key, value in attributes.items():
        rule = rules.get(key)
        if rule is None:
            continue
        slot, rank, parse, rule_dialect = rule
        parsed = parse(key, value)
        if rule_dialect < dialect:
            dialect = rule_dialect
        if parsed is None:
            continue
        best = found.get(slot)
        if best is None or rank < best[0]:
            found[slot] = (rank, key, parsed)

    for slot, (_, _, parsed) in found.items():
        if slot in _DIRECT_SLOTS:
            columns[slot] = parsed

    category, operation, name_dialect = _category(name, found)
    columns["category"] = category
    columns["operation"] = operation
    columns["dialect"] = _DIALECTS[dialect] if dialect < _NO_DIALECT else name_dialect

    hit = found.get("provider")
    if hit is not None:
        columns["provider"] = normalize_provider(hit[2])

    if "oi_model" in found:
        _models(found, columns)
    if columns["response_id"] is None and "oi_output" in found and category in INFERENCE_CATEGORIES:
        oi_output = found["oi_output"][2]
        columns["response_id"] = _output_response_id(oi_output) if type(oi_output) is str else None
    _identities(name, category, found, columns)
    if "graph_node" in found:  # the dialect table's graph_node value is a (node, namespace) pair
        columns["graph_node"] = _node_span(name, found["graph_node"][2])  # type: ignore[arg-type]
    if not found.keys().isdisjoint(_USAGE_SLOTS):
        _usage(found, columns)

    consumed = [
        key
        for slot, (_, key, value) in found.items()
        if columns.get(slot, _ABSENT) == value and key not in _PARTLY_READ
    ]
    if "oi_model" in found:
        oi_key, oi_model = found["oi_model"][1:]
        if oi_model in (columns["request_model"], columns["response_model"]):
            consumed.append(oi_key)
    return frozenset(consumed)


_DIRECT_SLOTS = frozenset(_DIRECT_COLUMNS)
_USAGE_SLOTS = frozenset((*TOKEN_COLUMNS, "total_tokens", *(s for v in _MODALITY_SLOTS.values() for s in v)))
_ABSENT = object()
# Keys a column reads only a part of (the request model inside the invocation JSON): always kept in the map.
_PARTLY_READ = frozenset({"llm.invocation_parameters", "metadata"})


def _node_span(name: str, node: tuple[str, str | None]) -> str | None:
    """The node's name when this span is the run of a graph node: named for the node (LangGraph runs a node
    under its name) and, where the namespace is known, its last segment is that node's task. The spans
    inside a node (its model calls, tools, a sub-graph) carry the same metadata under other names."""
    node_name, namespace = node
    if name != node_name:
        return None
    if namespace is not None and namespace.rpartition("|")[2].partition(":")[0] != node_name:
        return None
    return intern(node_name) if len(node_name) <= _INTERN_MAX_CHARS else node_name


def _category(name: str, found: dict[str, tuple[int, str, object]]) -> tuple[str, str | None, str | None]:
    """(category, operation, dialect known from the span name). The most specific marker decides:
    gen_ai.operation.name, then OpenInference kind, Traceloop kind, llm.request.type, then the span name."""
    by_name = _NAME_CATEGORY.get(name)
    if by_name is None and name.startswith(MCP_TOOL_PREFIX):
        by_name = (CATEGORY_TOOL, DIALECT_SPAN_NAME)
    name_dialect = by_name[1] if by_name is not None else None

    hit = found.get("operation")
    operation = hit[2] if hit is not None and type(hit[2]) is str else None  # its parser (_name) gives str
    if operation is not None:
        category = _OPERATION_CATEGORY.get(operation.strip().lower())
        if category is not None:
            return category, operation, name_dialect
    for slot, table in (("oi_kind", _OPENINFERENCE_CATEGORY), ("tl_kind", _TRACELOOP_CATEGORY)):
        hit = found.get(slot)
        if hit is not None and hit[2] in table:
            category = table[hit[2]]
            return category, operation or _CATEGORY_OPERATION.get(category), name_dialect
    hit = found.get("request_type")
    if hit is not None and hit[2] in _REQUEST_TYPE_CATEGORY:
        category = _REQUEST_TYPE_CATEGORY[hit[2]]
        derived = _REQUEST_TYPE_OPERATION.get(hit[2]) or _CATEGORY_OPERATION.get(category)
        return category, operation or derived, name_dialect
    if by_name is not None:
        category = by_name[0]
        return category, operation or _CATEGORY_OPERATION.get(category), name_dialect
    return CATEGORY_OTHER, operation, None


def _models(found: dict[str, tuple[int, str, object]], columns: dict[str, object]) -> None:
    hit = found.get("oi_model")
    if hit is None:
        return
    model = hit[2]
    if columns["request_model"] is None:
        columns["request_model"] = model  # openinference-openai-agents: the request alias
    elif columns["response_model"] is None and model != columns["request_model"]:
        columns["response_model"] = model  # openinference-openai: the dated response model


def _output_response_id(output: str) -> str | None:
    """OpenInference without its gen_ai.* mapping keeps the response id only inside `output.value`, the
    response body as JSON. The exactly-once rule needs it (the anthropic SDK's own span of the same call can
    sit in another trace), so read the top-level "id" of a JSON object; bounded in size."""
    if not output.startswith("{") or len(output) > _MAX_OUTPUT_JSON:
        return None
    try:
        body = json.loads(output)
    except ValueError:
        return None
    response_id = body.get("id") if isinstance(body, dict) else None
    return response_id if isinstance(response_id, str) and response_id else None


def _identities(
    name: str, category: str, found: dict[str, tuple[int, str, object]], columns: dict[str, object]
) -> None:
    entity = found.get("entity_name")  # Traceloop: the agent's or tool's name, or a workflow's
    if entity is not None:
        if category == CATEGORY_AGENT and columns["agent_name"] is None:
            columns["agent_name"] = entity[2]
            found["agent_name"] = entity
        elif category == CATEGORY_TOOL and columns["tool_name"] is None:
            columns["tool_name"] = entity[2]
            found["tool_name"] = entity
    if columns["tool_name"] is None and name.startswith(MCP_TOOL_PREFIX):
        columns["tool_name"] = intern(name[len(MCP_TOOL_PREFIX) :]) or None
    function_id = found.get("function_id")  # Vercel: names the calling function; kept in the map too
    if function_id is not None and columns["agent_name"] is None:
        columns["agent_name"] = function_id[2]


def _usage(found: dict[str, tuple[int, str, object]], columns: dict[str, object]) -> None:
    tokens: dict[str, int] = {}
    for column in TOKEN_COLUMNS:
        hit = found.get(column)
        if hit is not None:
            tokens[column] = hit[2]  # type: ignore[assignment]  # the token slots' parser (_tokens) gives int
    for column, slots in _MODALITY_SLOTS.items():  # parts of the count: it is at least their sum
        parts = [found[slot][2] for slot in slots if slot in found]
        if parts and (column not in tokens or sum(parts) > tokens[column]):  # type: ignore[arg-type]  # ints
            tokens[column] = _bounded(sum(parts), column)  # type: ignore[arg-type]  # as above: ints
    total = found.get("total_tokens")
    if not tokens and total is None:
        return
    if columns["response_model"] is None and not any(tokens.values()) and not (total and total[2]):
        for column in MODALITY_COLUMNS:  # unknown usage: no part of it is known either
            columns[column] = None
        return  # all zero and no response: a stream whose usage was never read (Traceloop 0.40.14)
    cache = tokens.get("cache_read_tokens", 0) + tokens.get("cache_write_tokens", 0)
    input_tokens = tokens.get("input_tokens")
    if input_tokens is not None and cache > input_tokens:
        tokens["input_tokens"] = _bounded(input_tokens + cache, "input_tokens")
    reasoning = tokens.get("reasoning_tokens")
    output_tokens = tokens.get("output_tokens")
    if output_tokens is not None and reasoning is not None and reasoning > output_tokens:
        tokens["output_tokens"] = _bounded(output_tokens + reasoning, "output_tokens")
    columns.update(tokens)


def _bounded(count: int, column: str) -> int:
    if count > INT64_MAX:
        raise InvalidSpan(f"{column}={count}: token count is out of range after adding cache/reasoning")
    return count
