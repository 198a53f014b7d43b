"""Property tests: random mixes of dialect keys and random values through normalize (and otlp_values)."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList

from collector_ext.decode.dialects import _RULES, COLUMNS, INT64_MAX, TOKEN_COLUMNS, InvalidSpan, normalize
from collector_ext.decode.otlp_values import any_value_to_python, attribute_map, attributes_to_dict
from collector_ext.schema import CATEGORY_OTHER, GENAI_CATEGORIES

DIALECT_KEYS = sorted(_RULES)
SPAN_NAMES = [
    "agent.loop",
    "gen_ai.chat",
    "mcp.tool.search",
    "mcp.tool.",
    "ai.generateText",
    "ai.generateText.doGenerate",
    "ai.streamText.doStream",
    "ai.embed.doEmbed",
    "ai.toolCall",
    "chat gpt-4o",
    "",
]
KIND_VALUES = ["LLM", "AGENT", "TOOL", "CHAIN", "workflow", "agent", "tool", "chat", "completion", "invoke_agent"]

values = st.one_of(
    st.integers(min_value=-(2**64), max_value=2**64),
    st.integers(min_value=0, max_value=10_000),
    st.floats(allow_nan=True, allow_infinity=True),
    st.from_regex(r"\A-?[0-9]{1,21}\Z"),
    st.text(max_size=12),
    st.sampled_from(KIND_VALUES),
    st.booleans(),
    st.lists(st.one_of(st.integers(), st.text(max_size=4)), max_size=3),
    st.none(),
    st.binary(max_size=4),
    st.just('{"model": "gpt-4o", "id": "resp-1"}'),
)
keys = st.one_of(st.sampled_from(DIALECT_KEYS), st.text(min_size=1, max_size=10))
attribute_dicts = st.dictionaries(keys, values, max_size=12)
names = st.one_of(st.sampled_from(SPAN_NAMES), st.text(max_size=12))


def outcome(name: str, attributes: dict) -> tuple[str, object]:
    try:
        result = normalize(name, 1, attributes)
    except InvalidSpan as error:
        return "invalid", str(error)
    return "ok", result


@settings(max_examples=400, deadline=None)
@given(name=names, attributes=attribute_dicts)
def test_normalize_accepts_or_rejects_cleanly(name: str, attributes: dict) -> None:
    status, result = outcome(name, attributes)  # anything but InvalidSpan propagates and fails the test
    if status == "invalid":
        # the reason names one of the span's attribute keys (or a column, for a sum out of range)
        assert any(str(result).startswith(f"{key}=") for key in [*attributes, *TOKEN_COLUMNS])
        return
    columns = result.columns
    assert tuple(columns) == COLUMNS
    for column in TOKEN_COLUMNS:
        value = columns[column]
        assert value is None or (type(value) is int and 0 <= value <= INT64_MAX)
    # input includes cache, output includes reasoning
    if columns["input_tokens"] is not None:
        assert columns["input_tokens"] >= (columns["cache_read_tokens"] or 0) + (columns["cache_write_tokens"] or 0)
    if columns["output_tokens"] is not None and columns["reasoning_tokens"] is not None:
        assert columns["output_tokens"] >= columns["reasoning_tokens"]
    cost = columns["reported_cost_usd"]
    assert cost is None or (type(cost) is float and math.isfinite(cost) and cost >= 0)
    assert columns["category"] in GENAI_CATEGORIES | {CATEGORY_OTHER}
    for column in ("operation", "provider", "request_model", "response_model", "response_id", "tool_name"):
        assert columns[column] is None or (type(columns[column]) is str and columns[column])
    assert result.consumed <= attributes.keys()


@settings(max_examples=200, deadline=None)
@given(name=names, attributes=attribute_dicts)
def test_normalize_is_deterministic_and_order_independent(name: str, attributes: dict) -> None:
    first = outcome(name, attributes)
    again = outcome(name, dict(attributes))
    reversed_order = outcome(name, dict(reversed(list(attributes.items()))))
    if first[0] == "ok":
        assert again[0] == reversed_order[0] == "ok"
        assert first[1].columns == again[1].columns == reversed_order[1].columns
        assert first[1].consumed == again[1].consumed == reversed_order[1].consumed
    else:
        assert first == again  # same input, same reason
        assert reversed_order[0] == "invalid"  # another bad key may be named first, but it is rejected


# ---- otlp_values ----

scalars = st.one_of(
    st.text(max_size=8),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False),
    st.binary(max_size=6),
)
python_values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=4), inner, max_size=3)),
    max_leaves=8,
)


def to_any_value(value: object) -> AnyValue:
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, str):
        return AnyValue(string_value=value)
    if isinstance(value, bytes):
        return AnyValue(bytes_value=value)
    if isinstance(value, list):
        return AnyValue(array_value=ArrayValue(values=[to_any_value(item) for item in value]))
    return AnyValue(
        kvlist_value=KeyValueList(values=[KeyValue(key=k, value=to_any_value(v)) for k, v in value.items()])
    )


@settings(max_examples=200, deadline=None)
@given(attributes=st.dictionaries(st.text(max_size=6), python_values, max_size=6))
def test_otlp_values_round_trip_and_stringify(attributes: dict) -> None:
    kvs = [KeyValue(key=key, value=to_any_value(value)) for key, value in attributes.items()]
    decoded = attributes_to_dict(kvs)
    assert decoded == attributes
    assert all(any_value_to_python(kv.value) == attributes[kv.key] for kv in kvs)
    as_strings = attribute_map(decoded)
    assert as_strings.keys() == attributes.keys()
    assert all(type(text) is str for text in as_strings.values())
