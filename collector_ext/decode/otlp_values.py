"""OTLP attribute values -> plain Python, and plain Python -> the strings of the Parquet attribute map.

These run for every attribute of every span at ingest, so they dispatch on `WhichOneof("value")` through a
prebuilt table instead of probing each field in turn.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

PythonValue = str | int | float | bool | bytes | list | dict | None


def _array(v: AnyValue) -> list:
    return [any_value_to_python(item) for item in v.array_value.values]


def _kvlist(v: AnyValue) -> dict:
    return attributes_to_dict(v.kvlist_value.values)


# oneof field name -> reader. `string_value_strindex` indexes a profiles string table that spans do not
# carry; it is kept as the raw int so nothing is silently dropped.
_READERS: dict[str, Callable[[AnyValue], PythonValue]] = {
    "string_value": lambda v: v.string_value,
    "bool_value": lambda v: v.bool_value,
    "int_value": lambda v: v.int_value,
    "double_value": lambda v: v.double_value,
    "array_value": _array,
    "kvlist_value": _kvlist,
    "bytes_value": lambda v: v.bytes_value,
    "string_value_strindex": lambda v: v.string_value_strindex,
}


def any_value_to_python(v: AnyValue) -> PythonValue:
    """The Python value an AnyValue holds; None for an empty AnyValue (no field set)."""
    which = v.WhichOneof("value")
    if which is None:
        return None
    # The common case first: most GenAI attributes are strings.
    if which == "string_value":
        return v.string_value
    return _READERS[which](v)


def attributes_to_dict(kvs: Sequence[KeyValue]) -> dict[str, object]:
    """A KeyValue list as a dict; a repeated key keeps its last value (as the OTel SDKs do)."""
    return {kv.key: any_value_to_python(kv.value) for kv in kvs}


def _json_default(value: object) -> object:
    if isinstance(value, bytes):
        return value.hex()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def _to_json(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=_json_default)


# The text of small non-negative ints (status codes, ports, counts): one shared str each instead of a new
# one per span held by the receiver.
_SMALL_INT_TEXT = tuple(repr(n) for n in range(1024))


def _stringify(value: object) -> str | None:
    # `type(value) is` (not isinstance): a bool is not an int here
    if type(value) is str:
        return value
    if type(value) is bool:
        return "true" if value else "false"
    if type(value) is int:
        return _SMALL_INT_TEXT[value] if 0 <= value < 1024 else repr(value)
    if type(value) is float:
        return repr(value)
    if type(value) is bytes:
        return value.hex()
    if value is None:
        return None
    return _to_json(value)


def attribute_map(values: dict[str, object]) -> dict[str, str]:
    """Stringify values for the Parquet `map<string,string>` column.

    str as is; bool "true"/"false"; int/float via repr; list/dict as compact JSON (bytes inside as hex);
    bytes as hex. Empty values (None) are left out: the map has nothing meaningful to hold for them.
    """
    out: dict[str, str] = {}
    for key, value in values.items():
        text = _stringify(value)
        if text is not None:
            out[key] = text
    return out
