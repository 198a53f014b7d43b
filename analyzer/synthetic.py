"""Synthetic agentmeter datasets: realistic multi-agent span data, generated vectorised (numpy + Arrow).

    from analyzer.synthetic import generate
    summary = generate(Path("data"), tasks=1_000, seed=7)            # small, for notebooks and tests
    summary = generate(Path("big"), tasks=330_000, seed=1, agents=500, models=50)   # ~10 M spans

The rows look like what the receiver writes (`collector_ext.schema.SPANS`, through
`collector_ext.storage.dataset_files.DatasetFiles`), attribution columns filled as the stitcher would:

- A **task** is an orchestrator trace; its agent run (`invoke_agent <agent>`, the root span) calls LLMs,
  tools and delegates: each `delegate` tool span starts a sub-agent in a NEW trace whose root span carries a
  span link back to that delegate span. Sub-agents delegate further, depth 1-3 (`agent_depth`).
- LLM spans over many providers and models, spelled as emitters spell them: dated model names
  (`claude-sonnet-4-5-20250929`), semconv provider names (`aws.bedrock`, `gcp.vertex_ai`, `azure.ai.openai`,
  `x_ai`), one self-hosted model with no price (`vllm` / `acme-coder-13b`), input above 200 k tokens now and
  then (tiered prices), cache read/write and reasoning tokens. `input_tokens` includes cache tokens and
  `output_tokens` includes reasoning (the dataset's rule). Some spans carry a provider-reported cost.
- Tasks arrive in bursts separated by idle gaps over `days` days; agents live in namespaces/services/pods.
- Every span's resource carries its pod's labels as the Collector adds them: `agent.team` (TEAMS, per
  namespace) and `k8s.pod.labels.cost-center` (COST_CENTERS).
- `usage_counted` is true exactly on LLM spans (agents and tools report no usage); `task_id` is the top
  trace's id, `stitch_state` "ok", `parent_agent_name` the delegating agent.

The signature of `generate` is stable: other tools (notebooks, benchmarks) depend on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from collector_ext.schema import MODALITY_COLUMNS, SPANS, TIMESTAMP
from collector_ext.storage.dataset_files import DatasetFiles

DEFAULT_START = datetime(2026, 11, 2, tzinfo=UTC)
SELF_HOSTED = ("vllm", "acme-coder-13b")

# (provider as the emitter spells it, model as the emitter spells it, kind) - kind: cache = prompt caching,
# write = also cache writes (Anthropic style), reasoning = reasoning tokens, tiered = sometimes > 200 k input.
MODEL_CATALOG: list[tuple[str, str, str]] = [
    ("openai", "gpt-4o-2024-08-06", "cache"),
    ("anthropic", "claude-sonnet-4-5-20250929", "cache write tiered"),
    ("openai", "gpt-4o-mini", "cache"),
    ("anthropic", "claude-3-5-haiku-20241022", "cache write"),
    ("gcp.vertex_ai", "gemini-2.5-pro", "cache tiered reasoning"),
    ("aws.bedrock", "us.anthropic.claude-sonnet-4-20250514-v1:0", "cache write"),
    ("azure.ai.openai", "gpt-4o", "cache"),
    ("x_ai", "grok-3", ""),
    SELF_HOSTED + ("",),
    ("openai", "o3-mini", "cache reasoning"),
    ("gcp.gemini", "gemini-2.5-flash", "cache reasoning"),
    ("mistral_ai", "mistral-large-latest", ""),
    ("deepseek", "deepseek-chat", "cache"),
    ("groq", "llama-3.3-70b-versatile", ""),
    ("openai", "gpt-4.1", "cache"),
    ("anthropic", "claude-opus-4-1-20250805", "cache write"),
    ("aws.bedrock", "amazon.nova-pro-v1:0", ""),
    ("openai", "gpt-5-mini", "cache reasoning"),
    ("deepseek", "deepseek-reasoner", "cache reasoning"),
    ("cohere", "command-r-plus", ""),
    ("xai", "grok-3-mini", "reasoning"),
]

ORCHESTRATOR_NAMES = ["orchestrator", "support-triage", "research-lead", "release-captain"]
WORKER_NAMES = ["web-researcher", "code-writer", "code-reviewer", "sql-analyst", "summarizer", "ticket-router",
                "doc-retriever", "test-runner"]  # fmt: skip
NAMESPACES = ["team-search", "team-support", "team-data", "platform"]
TEAMS = ["search", "support", "data", "platform"]  # per namespace: the pods' `team` label
COST_CENTERS = ["cc-100", "cc-200", "cc-200", "cc-900"]  # per namespace: the pods' `cost-center` label
TEAM_TAG = "agent.team"
COST_CENTER_TAG = "k8s.pod.labels.cost-center"
TOOLS = ["web_search", "read_file", "run_sql", "http_get", "vector_search"]
PODS_PER_AGENT = 3
MAX_DEPTH = 3


@dataclass
class Summary:
    """What `generate` wrote (figures a test or benchmark can check against the dataset)."""

    tasks: int
    traces: int
    spans: int
    llm_calls: int
    files: list[Path | str]  # local paths, or s3:// URIs


def model_catalog(models: int) -> list[tuple[str, str, str]]:
    """The first `models` entries of the catalog; past its end, more bundled genai-prices models (sorted)."""
    catalog = list(MODEL_CATALOG[:models])
    if models > len(catalog):
        from genai_prices.data_snapshot import get_snapshot

        seen = {m for _, m, _ in catalog}
        extra = []
        for provider in get_snapshot().providers:
            if provider.id in ("openai", "anthropic", "google", "mistral", "groq"):
                extra += [(provider.id, m.id, "") for m in provider.models if m.id not in seen]
        catalog += sorted(extra)[: models - len(catalog)]
    return catalog


def generate(
    root: Path,
    *,
    tasks: int,
    seed: int,
    days: float = 3.0,
    agents: int = 12,
    models: int = len(MODEL_CATALOG),
    start: datetime = DEFAULT_START,
    writer_id: str = "synthetic",
    chunk_tasks: int = 50_000,
) -> Summary:
    """Write a synthetic dataset of `tasks` orchestrator tasks (about 10 spans per trace, 3 traces per task).

    `agents` distinct agent names (a fifth of them orchestrators), `models` (provider, model) pairs (see
    `model_catalog`; the self-hosted one is included once models >= 9), over `days` days from `start`.
    Deterministic for a given seed and arguments. Generates in chunks of `chunk_tasks` to bound memory.
    """
    if tasks < 1 or agents < 2 or models < 1 or days <= 0:
        raise ValueError("tasks >= 1, agents >= 2, models >= 1 and days > 0 are required")
    rng = np.random.default_rng(seed)
    world = _World.build(agents, model_catalog(models), rng)
    files_writer = DatasetFiles(Path(root), writer_id)
    start_ns = int(start.timestamp() * 1e9)
    span_ns = int(days * 86400e9)
    # bursts: tasks cluster around burst centres; the time between bursts is idle
    bursts = np.sort(rng.uniform(0, max(span_ns - 3600e9, 1), size=max(1, tasks // 25)))
    summary = Summary(tasks=tasks, traces=0, spans=0, llm_calls=0, files=[])
    for first in range(0, tasks, chunk_tasks):
        n = min(chunk_tasks, tasks - first)
        task_start = bursts[rng.integers(0, len(bursts), n)] + rng.exponential(90e9, n)
        table, traces, llm = _generate_chunk(world, rng, start_ns + task_start.astype(np.int64), first, seed)
        summary.files += files_writer.write("spans", table)
        summary.traces += traces
        summary.spans += table.num_rows
        summary.llm_calls += llm
    return summary


@dataclass
class _World:
    agent_names: list[str]
    orchestrators: np.ndarray  # agent indices
    workers: np.ndarray
    agent_namespace: np.ndarray  # agent -> namespace index
    agent_model: np.ndarray  # agent -> preferred model index
    providers: list[str]
    model_names: list[str]
    model_kind: list[str]

    @classmethod
    def build(cls, agents: int, catalog: list[tuple[str, str, str]], rng: np.random.Generator) -> _World:
        n_orch = max(1, agents // 5)
        orch_names = ORCHESTRATOR_NAMES[:n_orch] + [
            f"orchestrator-{i:03d}" for i in range(n_orch - len(ORCHESTRATOR_NAMES))
        ]
        worker_names = WORKER_NAMES[: agents - n_orch]
        worker_names += [f"worker-{i:03d}" for i in range(agents - n_orch - len(worker_names))]
        names = orch_names + worker_names
        preferred = rng.integers(0, len(catalog), agents)
        if SELF_HOSTED in [(p, m) for p, m, _ in catalog]:  # the self-hosted model serves one worker
            preferred[n_orch] = [(p, m) for p, m, _ in catalog].index(SELF_HOSTED)
        return cls(
            agent_names=names,
            orchestrators=np.arange(n_orch),
            workers=np.arange(n_orch, agents),
            agent_namespace=np.arange(agents) % len(NAMESPACES),
            agent_model=preferred,
            providers=[p for p, _, _ in catalog],
            model_names=[m for _, m, _ in catalog],
            model_kind=[k for _, _, k in catalog],
        )


def _ids(rng: np.random.Generator, n: int, width: int) -> np.ndarray:
    return np.frombuffer(rng.bytes(n * width), dtype=f"S{width}") if n else np.empty(0, dtype=f"S{width}")


def _generate_chunk(
    world: _World, rng: np.random.Generator, task_start: np.ndarray, first_task: int, seed: int
) -> tuple[pa.Table, int, int]:
    """All traces of a chunk of tasks, level by level (orchestrators, then sub-agents at depth 1..3)."""
    n_tasks = len(task_start)
    # per-trace arrays of the current level
    level = {
        "trace_id": _ids(rng, n_tasks, 16),
        "task": np.arange(n_tasks),
        "agent": world.orchestrators[rng.integers(0, len(world.orchestrators), n_tasks)],
        "parent_agent": np.full(n_tasks, -1),
        "start": task_start,
        "link_trace": np.zeros(n_tasks, dtype="S16"),
        "link_span": np.zeros(n_tasks, dtype="S8"),
    }
    task_ids = level["trace_id"].copy()
    parts, traces, llm_calls = [], 0, 0
    for depth in range(MAX_DEPTH + 1):
        n = len(level["trace_id"])
        if n == 0:
            break
        traces += n
        children_mean = (1.2, 0.6, 0.3, 0.0)[depth]
        part, children = _spans_of_level(world, rng, level, depth, children_mean, task_ids, first_task, seed)
        parts.append(part)
        llm_calls += int(pc.sum(pc.equal(part["category"], "llm")).as_py() or 0)
        level = children
    return pa.concat_tables(parts).combine_chunks(), traces, llm_calls


def _spans_of_level(
    world: _World,
    rng: np.random.Generator,
    level: dict[str, np.ndarray],
    depth: int,
    children_mean: float,
    task_ids: np.ndarray,
    first_task: int,
    seed: int,
) -> tuple[pa.Table, dict[str, np.ndarray]]:
    """The span rows of every trace at one depth (root agent run, then its LLM/tool/delegate steps in a
    random order, one after another) and the next level's traces: one sub-agent per delegate step."""
    n = len(level["trace_id"])
    n_llm = 1 + rng.poisson(4.0, n)
    n_tool = rng.poisson(2.5, n)
    n_deleg = rng.poisson(children_mean, n) if children_mean else np.zeros(n, dtype=np.int64)
    steps = n_llm + n_tool + n_deleg
    # step kinds (0 llm, 1 tool, 2 delegate) in a random order inside each trace
    step_trace = np.repeat(np.arange(n), steps)
    offset_in_trace = np.arange(len(step_trace)) - np.repeat(np.cumsum(steps) - steps, steps)
    kind = np.where(
        offset_in_trace < np.repeat(n_llm, steps), 0, np.where(offset_in_trace < np.repeat(n_llm + n_tool, steps), 1, 2)
    )
    order = np.lexsort((rng.random(len(step_trace)), step_trace))
    kind = kind[order]
    n_steps = len(kind)
    # durations (ns) and sequential start times inside the agent run
    duration = np.where(kind == 0, rng.lognormal(np.log(1.8e9), 0.6, n_steps),
                        np.where(kind == 1, rng.lognormal(np.log(0.4e9), 0.8, n_steps), rng.uniform(5e9, 60e9, n_steps)))  # fmt: skip
    duration = duration.astype(np.int64)
    gap = rng.integers(5_000_000, 50_000_000, n_steps)
    elapsed = np.cumsum(duration + gap) - (duration + gap)  # exclusive running sum over all steps
    first_step = np.cumsum(steps) - steps  # every trace has at least one LLM step
    step_start = level["start"][step_trace] + 1_000_000 + elapsed - elapsed[first_step][step_trace]
    step_end = step_start + duration
    trace_end = np.full(n, 0, dtype=np.int64)
    np.maximum.at(trace_end, step_trace, step_end)
    trace_end = np.maximum(trace_end, level["start"]) + 2_000_000

    root_span = _ids(rng, n, 8)
    step_span = _ids(rng, n_steps, 8)
    agent_of_step = level["agent"][step_trace]
    # ---- models and usage of LLM steps
    n_models = len(world.model_names)
    preferred = world.agent_model[agent_of_step]
    model = np.where(rng.random(n_steps) < 0.7, preferred, rng.integers(0, n_models, n_steps))
    has = {k: np.array([k in s for s in world.model_kind])[model] for k in ("cache", "write", "reasoning", "tiered")}
    input_tokens = rng.lognormal(np.log(2500), 0.9, n_steps).astype(np.int64) + 50
    big = has["tiered"] & (rng.random(n_steps) < 0.03)
    input_tokens = np.where(big, rng.integers(200_001, 400_000, n_steps), input_tokens)
    output_tokens = rng.lognormal(np.log(350), 0.8, n_steps).astype(np.int64) + 1
    cache_read = np.where(
        has["cache"] & (rng.random(n_steps) < 0.5), (input_tokens * rng.uniform(0.1, 0.8, n_steps)).astype(np.int64), 0
    )
    cache_write = np.where(
        has["write"] & (rng.random(n_steps) < 0.15),
        (input_tokens * rng.uniform(0.0, 0.15, n_steps)).astype(np.int64),
        0,
    )
    reasoning = np.where(has["reasoning"], (output_tokens * rng.uniform(0.2, 0.8, n_steps)).astype(np.int64), 0)
    is_llm = kind == 0
    is_tool = kind == 1
    is_deleg = kind == 2
    tool = rng.integers(0, len(TOOLS), n_steps)

    # ---- children (next level): one per delegate step
    deleg_idx = np.nonzero(is_deleg)[0]
    n_child = len(deleg_idx)
    parent_trace = step_trace[deleg_idx]
    children = {
        "trace_id": _ids(rng, n_child, 16),
        "task": level["task"][parent_trace],
        "agent": world.workers[rng.integers(0, len(world.workers), n_child)],
        "parent_agent": level["agent"][parent_trace],
        "start": step_start[deleg_idx] + 20_000_000,
        "link_trace": level["trace_id"][parent_trace],
        "link_span": step_span[deleg_idx],
    }

    # ---- assemble rows: roots first, then steps
    rows = n + n_steps
    trace_of_row = np.concatenate([np.arange(n), step_trace])
    agent = level["agent"][trace_of_row]
    category_idx = np.concatenate([np.zeros(n, dtype=np.int8), np.where(is_llm, 1, 2).astype(np.int8)])
    names = _strings(world, agent, category_idx, np.concatenate([np.zeros(n, np.int64), model]),
                     np.concatenate([np.full(n, -1), np.where(is_deleg, -2, tool)]))  # fmt: skip
    llm_row = np.concatenate([np.zeros(n, bool), is_llm])
    is_root = np.concatenate([np.ones(n, bool), np.zeros(n_steps, bool)])
    is_deleg_row = np.concatenate([np.zeros(n, bool), is_deleg])
    pod = agent * PODS_PER_AGENT + rng.integers(0, PODS_PER_AGENT, rows)
    start = np.concatenate([level["start"], step_start])
    end = np.concatenate([trace_end, step_end])
    tasks_global = first_task + level["task"][trace_of_row]
    # provider-reported cost on x_ai-like calls (about the list price), absent elsewhere
    reports_cost = llm_row & np.concatenate(
        [np.zeros(n, bool), np.array([p.startswith("x") for p in world.providers])[model]]
    )
    tokens = {
        "input_tokens": np.concatenate([np.zeros(n, np.int64), input_tokens]),
        "output_tokens": np.concatenate([np.zeros(n, np.int64), output_tokens]),
        "cache_read_tokens": np.concatenate([np.zeros(n, np.int64), cache_read]),
        "cache_write_tokens": np.concatenate([np.zeros(n, np.int64), cache_write]),
        "reasoning_tokens": np.concatenate([np.zeros(n, np.int64), reasoning]),
    }
    reported = tokens["input_tokens"] * 3e-6 + tokens["output_tokens"] * 15e-6
    has_link = np.concatenate([np.full(n, depth > 0), np.zeros(n_steps, bool)])
    link_offsets = np.concatenate([[0], np.cumsum(has_link)]).astype(np.int32)
    linked = n if depth > 0 else 0  # every sub-agent root links to its parent's delegate span
    link_struct = pa.StructArray.from_arrays(
        [
            _fixed(level["link_trace"][:linked], 16).cast(pa.binary()),
            _fixed(level["link_span"][:linked], 8).cast(pa.binary()),
            pa.nulls(linked, type=SPANS.field("links").type.value_type.field("attributes").type),
        ],
        fields=list(SPANS.field("links").type.value_type),
    )
    links = pa.ListArray.from_arrays(pa.array(link_offsets), link_struct, mask=pa.array(~has_link))

    def masked(values: np.ndarray, mask: np.ndarray, type_: pa.DataType) -> pa.Array:
        return pa.array(values, type=type_, mask=~mask)

    tool_name = pa.array(np.array(TOOLS + ["delegate"], dtype=object)[np.where(is_deleg, len(TOOLS), tool)])
    columns = {
        "trace_id": _fixed(level["trace_id"][trace_of_row], 16),
        "span_id": _fixed(np.concatenate([root_span, step_span]), 8),
        "parent_span_id": _fixed_masked(np.concatenate([np.zeros(n, "S8"), root_span[step_trace]]), 8, is_root),
        "name": names["name"],
        "span_kind": pa.DictionaryArray.from_arrays(
            pa.array(llm_row.astype(np.int8)), pa.array(["internal", "client"])
        ).cast(pa.string()),
        "start_time": pa.array(start, TIMESTAMP),
        "end_time": pa.array(end, TIMESTAMP),
        "status_code": pa.DictionaryArray.from_arrays(
            pa.array((rng.random(rows) < 0.02).astype(np.int8) + 1), pa.array(["unset", "ok", "error"])
        ).cast(pa.string()),
        "status_message": pa.nulls(rows, pa.string()),
        "service_name": names["agent"],
        "k8s_namespace": pa.DictionaryArray.from_arrays(
            pa.array(world.agent_namespace[agent].astype(np.int32)), pa.array(NAMESPACES)
        ).cast(pa.string()),
        "k8s_pod": pa.DictionaryArray.from_arrays(
            pa.array(pod.astype(np.int32)),
            pa.array([f"{a}-{i}" for a in world.agent_names for i in range(PODS_PER_AGENT)]),
        ).cast(pa.string()),
        "k8s_node": pa.DictionaryArray.from_arrays(
            pa.array((pod % 4).astype(np.int32)), pa.array([f"node-{i}" for i in range(4)])
        ).cast(pa.string()),
        "k8s_container": pa.array(np.full(rows, "agent", dtype=object)),
        "resource_attributes": _pod_labels(world.agent_namespace[agent]),
        "category": pa.DictionaryArray.from_arrays(
            pa.array(np.where(is_deleg_row, 2, category_idx)), pa.array(["agent", "llm", "tool"])
        ).cast(pa.string()),
        "operation": pa.DictionaryArray.from_arrays(
            pa.array(category_idx), pa.array(["invoke_agent", "chat", "execute_tool"])
        ).cast(pa.string()),
        "provider": pc.if_else(pa.array(llm_row), names["provider"], pa.nulls(rows, pa.string())),
        "request_model": pc.if_else(pa.array(llm_row), names["model"], pa.nulls(rows, pa.string())),
        "response_model": pc.if_else(pa.array(llm_row), names["model"], pa.nulls(rows, pa.string())),
        "response_id": pc.if_else(
            pa.array(llm_row),
            pc.binary_join_element_wise(
                f"resp_{seed}_{depth}_{first_task}_", pc.cast(pa.array(np.arange(rows)), pa.string()), ""
            ),
            pa.nulls(rows, pa.string()),
        ),
        "tool_name": pc.if_else(
            pa.array(np.concatenate([np.zeros(n, bool), is_tool | is_deleg])),
            tool_name.take(pa.array(np.concatenate([np.zeros(n, np.int64), np.arange(n_steps)]))),
            pa.nulls(rows, pa.string()),
        ),
        "conversation_id": pc.binary_join_element_wise("conv-", pc.cast(pa.array(tasks_global), pa.string()), ""),
        "dialect": pa.array(np.full(rows, "otel_genai", dtype=object)),
        "graph_node": pa.nulls(rows, pa.string()),
        **{k: masked(v, llm_row, pa.int64()) for k, v in tokens.items()},
        **{k: pa.nulls(rows, pa.int64()) for k in MODALITY_COLUMNS},  # text only
        "usage_counted": pa.array(llm_row),
        "reported_cost_usd": masked(reported, reports_cost, pa.float64()),
        "agent_name": names["agent"],
        "agent_id": pc.binary_join_element_wise(
            names["agent"],
            pa.array(np.full(rows, "-", dtype=object)),
            pc.cast(pa.array(pod % PODS_PER_AGENT), pa.string()),
            "",
        ),
        "agent_span_id": _fixed(root_span[trace_of_row], 8),
        "parent_agent_name": _agent_names_or_null(world, level["parent_agent"][trace_of_row]),
        "agent_depth": pa.array(np.full(rows, depth, dtype=np.int32)),
        "task_id": _fixed(task_ids[level["task"][trace_of_row]], 16),
        "stitch_state": pa.array(np.full(rows, "ok", dtype=object)),
        "links": links,
        "attributes": pa.nulls(rows, SPANS.field("attributes").type),
        "received_time": pa.array(end + 1_000_000_000, TIMESTAMP),
    }
    return pa.table(columns, schema=SPANS), children


def _pod_labels(namespace: np.ndarray) -> pa.Array:
    """The resource attributes the Collector adds from pod labels (otel-config/collector.yaml): the team
    (`agent.team`, from the pod label `team`) and a cost centre (k8sattributes' default tag name)."""
    rows = len(namespace)
    keys = np.tile(np.array([TEAM_TAG, COST_CENTER_TAG], dtype=object), rows)
    values = np.empty(2 * rows, dtype=object)
    values[0::2] = np.array(TEAMS, dtype=object)[namespace]
    values[1::2] = np.array(COST_CENTERS, dtype=object)[namespace]
    offsets = pa.array(np.arange(0, 2 * rows + 1, 2, dtype=np.int32))
    return pa.MapArray.from_arrays(offsets, pa.array(keys, pa.string()), pa.array(values, pa.string()))


def _fixed(values: np.ndarray, width: int) -> pa.Array:
    data = np.ascontiguousarray(values, dtype=f"S{width}").tobytes()
    return pa.FixedSizeBinaryArray.from_buffers(pa.binary(width), len(values), [None, pa.py_buffer(data)])


def _fixed_masked(values: np.ndarray, width: int, null: np.ndarray) -> pa.Array:
    data = np.ascontiguousarray(values, dtype=f"S{width}").tobytes()
    validity = pa.array(~null).buffers()[1]
    return pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(width), len(values), [validity, pa.py_buffer(data)], null_count=int(null.sum())
    )


def _agent_names_or_null(world: _World, agent: np.ndarray) -> pa.Array:
    dictionary = pa.array(world.agent_names)
    return pa.DictionaryArray.from_arrays(
        pa.array(np.maximum(agent, 0).astype(np.int32), mask=agent < 0), dictionary
    ).cast(pa.string())


def _strings(
    world: _World, agent: np.ndarray, category: np.ndarray, model: np.ndarray, tool: np.ndarray
) -> dict[str, pa.Array]:
    """Span names, agent, provider and model strings from dictionary indices (no Python loop per row)."""
    agent_arr = pa.DictionaryArray.from_arrays(pa.array(agent.astype(np.int32)), pa.array(world.agent_names)).cast(
        pa.string()
    )
    model_arr = pa.DictionaryArray.from_arrays(pa.array(model.astype(np.int32)), pa.array(world.model_names)).cast(
        pa.string()
    )
    provider_arr = pa.DictionaryArray.from_arrays(pa.array(model.astype(np.int32)), pa.array(world.providers)).cast(
        pa.string()
    )
    tool_names = np.array(TOOLS + ["delegate"], dtype=object)
    tool_arr = pa.array(tool_names[np.where(tool == -2, len(TOOLS), np.maximum(tool, 0))])
    name = pc.case_when(
        pc.make_struct(pa.array(category == 0), pa.array(category == 1)),
        pc.binary_join_element_wise("invoke_agent ", agent_arr, ""),
        pc.binary_join_element_wise("chat ", model_arr, ""),
        pc.binary_join_element_wise("execute_tool ", tool_arr, ""),
    )
    return {"name": name, "agent": agent_arr, "model": model_arr, "provider": provider_arr}
