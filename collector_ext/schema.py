"""The dataset contract: table schemas, layout and schema version, imported by the receiver and the analyzer.

A dataset is a directory of Hive-partitioned, zstd Parquet::

    <root>/_schema.json
    <root>/spans/date=YYYY-MM-DD/<writer-id>-<seq>.parquet
    <root>/gpu_allocations/date=YYYY-MM-DD/<writer-id>-<seq>.parquet
    <root>/gpu_metrics/date=YYYY-MM-DD/<writer-id>-<seq>.parquet

Like Tempo's vparquet schemas this module is versioned: any change to a column's name or type bumps
SCHEMA_VERSION. Ids are binary (trace 16 bytes, span 8 bytes); timestamps are ns UTC. Hot attributes have
typed columns; every other attribute is kept in a string map so nothing is lost.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pyarrow as pa

# v2: graph_node (agent runs of graph frameworks: LangGraph), the input / output tokens per modality (priced
# at a model's own audio, image and video prices)
SCHEMA_VERSION = "agentmeter-v2"
# Every version ever written, oldest first: the analyzer reads them all (a column an older version lacks reads
# as NULL). A change to any table's columns bumps SCHEMA_VERSION and appends it here; tests/golden/ holds the
# columns of each version and tests/test_schema_golden.py fails on a change without a bump.
SCHEMA_VERSIONS: tuple[str, ...] = ("agentmeter-v1", "agentmeter-v2")

STRING_MAP = pa.map_(pa.string(), pa.string())
TIMESTAMP = pa.timestamp("ns", tz="UTC")
TRACE_ID = pa.binary(16)
SPAN_ID = pa.binary(8)

LINK = pa.struct(
    [
        pa.field("trace_id", pa.binary()),
        pa.field("span_id", pa.binary()),
        pa.field("attributes", STRING_MAP),
    ]
)

# Span categories (the `category` column).
CATEGORY_AGENT = "agent"
CATEGORY_LLM = "llm"
CATEGORY_EMBEDDING = "embedding"
CATEGORY_TOOL = "tool"
CATEGORY_RETRIEVAL = "retrieval"
CATEGORY_OTHER = "other"
GENAI_CATEGORIES = frozenset({CATEGORY_AGENT, CATEGORY_LLM, CATEGORY_EMBEDDING, CATEGORY_TOOL, CATEGORY_RETRIEVAL})
INFERENCE_CATEGORIES = frozenset({CATEGORY_LLM, CATEGORY_EMBEDDING})

# `span_kind` and `status_code` hold the OTLP enum names in lower case.
SPAN_KINDS = ("unspecified", "internal", "server", "client", "producer", "consumer")
STATUS_CODES = ("unset", "ok", "error")

# `stitch_state` values. "ok": attributed in a complete trace and task resolved.
STITCH_OK = "ok"
STITCH_PENDING = "pending_parent"  # sub-agent trace whose linked parent was not (yet) seen by this writer
STITCH_EARLY = "early_flush"  # written before quiet/root because of the memory limit
STITCH_SHUTDOWN = "shutdown_flush"  # written at shutdown while still incomplete
STITCH_NO_ROOT = "no_root"  # max wait reached without the trace's root span
STITCH_CYCLE = "cycle"
STITCH_SELF_LINK = "self_link"
STITCH_MULTI_PARENT = "multi_parent"
STITCH_MISSING_PARENT = "missing_parent"
# Analyzer only: the top trace of a task merged into another because they share inference calls (the same
# response_id): two instrumentations of one run, each making its own trace.
STITCH_SHARED_CALLS = "shared_calls"

# The parts of input / output tokens in a modality other than text (text is the rest), priced apart where
# a model has prices for them (genai-prices' input_audio / input_image / input_video / output_audio).
MODALITY_COLUMNS = ("input_audio_tokens", "input_image_tokens", "input_video_tokens", "output_audio_tokens")

SPANS = pa.schema(
    [
        # identity
        pa.field("trace_id", TRACE_ID, nullable=False),
        pa.field("span_id", SPAN_ID, nullable=False),
        pa.field("parent_span_id", SPAN_ID),
        pa.field("name", pa.string()),
        pa.field("span_kind", pa.string()),
        pa.field("start_time", TIMESTAMP, nullable=False),
        pa.field("end_time", TIMESTAMP, nullable=False),
        pa.field("status_code", pa.string()),
        pa.field("status_message", pa.string()),
        # resource
        pa.field("service_name", pa.string()),
        pa.field("k8s_namespace", pa.string()),
        pa.field("k8s_pod", pa.string()),
        pa.field("k8s_node", pa.string()),
        pa.field("k8s_container", pa.string()),
        pa.field("resource_attributes", STRING_MAP),
        # genai (normalized from every dialect)
        pa.field("category", pa.string()),
        pa.field("operation", pa.string()),
        pa.field("provider", pa.string()),
        pa.field("request_model", pa.string()),
        pa.field("response_model", pa.string()),
        # added to the DESIGN table: the exactly-once rule de-duplicates calls by response id across traces
        pa.field("response_id", pa.string()),
        pa.field("tool_name", pa.string()),
        pa.field("conversation_id", pa.string()),
        pa.field("dialect", pa.string()),
        # the graph node this span runs, on the node's own span (LangGraph's `langgraph_node`): its parent span
        # is the run of the graph, an agent run (collector_ext/traces/stitching.py)
        pa.field("graph_node", pa.string()),
        # usage (input includes cache, output includes reasoning)
        pa.field("input_tokens", pa.int64()),
        pa.field("output_tokens", pa.int64()),
        pa.field("cache_read_tokens", pa.int64()),
        pa.field("cache_write_tokens", pa.int64()),
        pa.field("reasoning_tokens", pa.int64()),
        # the parts of input / output in other modalities than text (gen_ai.usage.<modality>.input_tokens ...)
        pa.field("input_audio_tokens", pa.int64()),
        pa.field("input_image_tokens", pa.int64()),
        pa.field("input_video_tokens", pa.int64()),
        pa.field("output_audio_tokens", pa.int64()),
        pa.field("usage_counted", pa.bool_()),
        pa.field("reported_cost_usd", pa.float64()),
        # attribution (stitching)
        pa.field("agent_name", pa.string()),
        pa.field("agent_id", pa.string()),
        pa.field("agent_span_id", SPAN_ID),
        pa.field("parent_agent_name", pa.string()),
        pa.field("agent_depth", pa.int32()),
        pa.field("task_id", TRACE_ID),
        pa.field("stitch_state", pa.string()),
        # links (W3C trace context of sub-agents)
        pa.field("links", pa.list_(LINK)),
        # other
        pa.field("attributes", STRING_MAP),
        pa.field("received_time", TIMESTAMP),
    ],
    metadata={"agentmeter.schema_version": SCHEMA_VERSION},
)

GPU_ALLOCATIONS = pa.schema(
    [
        pa.field("node", pa.string()),
        pa.field("namespace", pa.string()),
        pa.field("pod", pa.string()),
        pa.field("container", pa.string()),
        pa.field("source", pa.string()),  # "dra" or "device_plugin"
        pa.field("claim_name", pa.string()),
        pa.field("claim_namespace", pa.string()),
        pa.field("driver", pa.string()),
        pa.field("pool", pa.string()),
        pa.field("device", pa.string()),
        pa.field("cdi_devices", pa.list_(pa.string())),
        pa.field("share_id", pa.string()),
        pa.field("resource_name", pa.string()),
        pa.field("device_ids", pa.list_(pa.string())),
        pa.field("first_seen", TIMESTAMP, nullable=False),
        pa.field("last_seen", TIMESTAMP, nullable=False),
    ],
    metadata={"agentmeter.schema_version": SCHEMA_VERSION},
)

GPU_METRICS = pa.schema(
    [
        pa.field("time", TIMESTAMP, nullable=False),
        pa.field("metric", pa.string(), nullable=False),
        pa.field("value", pa.float64()),
        pa.field("gpu", pa.string()),
        pa.field("uuid", pa.string()),
        pa.field("gpu_i_id", pa.string()),
        pa.field("gpu_i_profile", pa.string()),
        pa.field("hostname", pa.string()),
        pa.field("pod", pa.string()),
        pa.field("namespace", pa.string()),
        pa.field("container", pa.string()),
        pa.field("dra_claim_name", pa.string()),
        pa.field("dra_claim_namespace", pa.string()),
        pa.field("dra_driver_name", pa.string()),
        pa.field("dra_pool_name", pa.string()),
        pa.field("dra_device_name", pa.string()),
        pa.field("dra_mig_profile", pa.string()),
        pa.field("labels", STRING_MAP),
    ],
    metadata={"agentmeter.schema_version": SCHEMA_VERSION},
)

# table name -> (schema, timestamp column that picks the date partition)
TABLES: dict[str, tuple[pa.Schema, str]] = {
    "spans": (SPANS, "start_time"),
    "gpu_allocations": (GPU_ALLOCATIONS, "first_seen"),
    "gpu_metrics": (GPU_METRICS, "time"),
}

# Columns (Parquet leaf paths) of few distinct values, dictionary-encoded; the rest (ids, times, token counts,
# free text, attribute values) are written plain: a dictionary tried on unique values only costs. Measured on
# the ingest benchmark's spans: ~10 % less write time and ~25 % fewer bytes than dictionaries everywhere.
DICTIONARY_COLUMNS: dict[str, list[str]] = {
    "spans": [
        "name",
        "span_kind",
        "status_code",
        "service_name",
        "k8s_namespace",
        "k8s_pod",
        "k8s_node",
        "k8s_container",
        "resource_attributes.key_value.key",
        "resource_attributes.key_value.value",
        "category",
        "operation",
        "provider",
        "request_model",
        "response_model",
        "tool_name",
        "dialect",
        "graph_node",
        "agent_name",
        "agent_id",
        "parent_agent_name",
        "stitch_state",
        "links.list.element.attributes.key_value.key",
        "attributes.key_value.key",
    ],
}

SCHEMA_FILE = "_schema.json"


def schema_document() -> str:
    """The text of `_schema.json`: the schema version, and the column names for people."""
    doc = {
        "schema_version": SCHEMA_VERSION,
        "tables": {name: [f.name for f in schema] for name, (schema, _) in TABLES.items()},
        "partitioning": "hive: <table>/date=YYYY-MM-DD/<writer-id>-<seq>.parquet (zstd)",
    }
    return json.dumps(doc, indent=2) + "\n"


def write_schema_file(root: Path, mode: int = 0o644) -> None:
    """Record the schema version (and the column names, for people) at the dataset root, atomically.

    Every writer of a shared dataset does this at start: each writes its own uniquely named temporary
    file, so two writers starting together never rename (or truncate) each other's."""
    root.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=root, prefix=f".{SCHEMA_FILE}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(schema_document())
        os.chmod(tmp, mode)  # mkstemp creates 0600
        os.replace(tmp, root / SCHEMA_FILE)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_schema_version(root: Path) -> str | None:
    try:
        return json.loads((root / SCHEMA_FILE).read_text())["schema_version"]
    except (OSError, ValueError, KeyError):
        return None
