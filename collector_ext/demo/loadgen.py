"""A realistic multi-agent GenAI workload, sent through the real OpenTelemetry SDK and OTLP exporter.

Orchestrator agents call LLMs and tools and delegate to sub-agents; each sub-agent starts a NEW trace whose
root span carries a span link to the orchestrator's delegating span (W3C context), and may delegate again.
Agents run in several namespaces, pods and services (resource attributes), call several providers and
models (OpenAI, Anthropic, a Bedrock alias, dated model names, a self-hosted vLLM model with no price on a
pod holding a GPU slice), report cache and reasoning tokens, and speak several GenAI dialects (OTel GenAI,
the seed's `agent.loop` / `mcp.tool.*`, OpenInference, legacy Traceloop). Tasks come in bursts separated by
idle gaps.

Span times run on a simulated clock (explicit `start_time` / `end_time`), so days of bursts and idle gaps
are sent in seconds. Everything is drawn from one seeded RNG (span and trace ids too), so a seed always
produces the same spans; `run_workload` returns the EXPECTED totals (per agent, per model, per task tree)
that tests and the demo check the dataset against. Usage semantics follow DESIGN.md: input tokens include
cache tokens, output tokens include reasoning tokens, each LLM call is counted once.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as gen_ai
from opentelemetry.semconv._incubating.attributes import k8s_attributes as k8s
from opentelemetry.semconv.attributes import service_attributes
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, Tracer, set_span_in_context

from collector_ext.config import parse_endpoint
from collector_ext.demo.fake_kubelet import demo_mig_device

Protocol = Literal["grpc", "http/protobuf"]
NS_PER_S = 1_000_000_000


# --- the simulated cluster -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pod:
    name: str
    namespace: str
    node: str
    service: str
    container: str


@dataclass(frozen=True)
class GpuSlice:
    """A DRA MIG slice held by a pod: the fake kubelet of the demo serves exactly these claims."""

    pod: Pod
    claim_name: str
    driver: str
    pool: str
    device: str
    mig_profile: str
    gpu_minor: int
    gpu_uuid: str
    gpu_instance_id: int
    mig_uuid: str


@dataclass(frozen=True)
class Model:
    provider: str  # gen_ai.provider.name
    request_model: str
    response_model: str
    cache: bool = False  # reports cache read/write tokens
    reasoning: bool = False  # reports reasoning tokens (part of output)


GPT_4O_MINI = Model("openai", "gpt-4o-mini", "gpt-4o-mini-2024-07-18", cache=True)
O4_MINI = Model("openai", "o4-mini", "o4-mini-2025-04-16", cache=True, reasoning=True)
CLAUDE_SONNET = Model("anthropic", "claude-sonnet-4-5", "claude-sonnet-4-5-20250929", cache=True, reasoning=True)
CLAUDE_HAIKU = Model("anthropic", "claude-haiku-4-5", "claude-haiku-4-5-20251001", cache=True)
BEDROCK_HAIKU = Model(
    "aws.bedrock", "us.anthropic.claude-3-5-haiku-20241022-v1:0", "us.anthropic.claude-3-5-haiku-20241022-v1:0"
)
LLAMA_SELF_HOSTED = Model("vllm", "llama-3.1-8b-instruct", "llama-3.1-8b-instruct")


@dataclass(frozen=True)
class Delegation:
    agent: str
    probability: float  # per step of the delegating agent
    max_per_run: int


@dataclass(frozen=True)
class AgentProfile:
    name: str
    pods: tuple[Pod, ...]
    models: tuple[Model, ...]
    dialect: Literal["genai", "genai-legacy", "openinference", "traceloop"]  # of its LLM spans
    agent_span: Literal["invoke_agent", "agent.loop"]
    steps: tuple[int, int]  # LLM calls per run (min, max)
    tools: tuple[str, ...] = ()
    mcp_tools: tuple[str, ...] = ()
    delegations: tuple[Delegation, ...] = ()
    reports_rollup: bool = False  # the agent span repeats its calls' usage (must not be counted twice)


def _pods(service: str, namespace: str, nodes: Sequence[str], count: int, container: str = "agent") -> tuple[Pod, ...]:
    return tuple(
        Pod(f"{service}-{suffix}", namespace, nodes[i % len(nodes)], service, container)
        for i, suffix in enumerate(["7f9c4-2xk8p", "7f9c4-q5rtn", "7f9c4-zz41m"][:count])
    )


CLASSIFIER_PODS = (
    Pod("ticket-classifier-0", "support", "gpu-node-1", "ticket-classifier", "server"),
    Pod("ticket-classifier-1", "support", "gpu-node-1", "ticket-classifier", "server"),
)

# One 1g.10gb MIG slice per classifier pod through a DRA claim, each on its own GPU (so dcgm-exporter's MIG
# rows can be told apart: collector_ext/demo/dcgm_exporter.py): the same claims the demo's fake kubelet
# (collector_ext.demo.fake_kubelet.demo_cluster) serves for these pods, named as NVIDIA's DRA driver names them.
GPU_SLICES = tuple(
    GpuSlice(
        pod,
        claim_name=f"{pod.name}-gpu",
        driver="gpu.nvidia.com",
        pool=pod.node,
        device=demo_mig_device(index),
        mig_profile="1g.10gb",
        gpu_minor=index,
        gpu_uuid=f"GPU-5f1e2b7c-0d1a-4c59-9a8e-3b6f0e2d4a1{index}",
        gpu_instance_id=7,
        mig_uuid=f"MIG-9c3f6d2a-41e7-5b08-8d9c-2e7a1f4b6c0{index}",
    )
    for index, pod in enumerate(CLASSIFIER_PODS)
)

AGENTS: dict[str, AgentProfile] = {
    profile.name: profile
    for profile in (
        AgentProfile(
            "research-planner",
            _pods("research-planner", "research", ["node-a", "node-b"], 2),
            (CLAUDE_SONNET, O4_MINI),
            "genai",
            "invoke_agent",
            (1, 3),
            tools=("web_search",),
            delegations=(
                Delegation("web-researcher", 0.7, 2),
                Delegation("summarizer", 0.3, 1),
                Delegation("code-runner", 0.25, 1),
            ),
            reports_rollup=True,
        ),
        AgentProfile(
            "support-triage",
            _pods("support-triage", "support", ["node-a", "node-b"], 2),
            (GPT_4O_MINI, BEDROCK_HAIKU),
            "genai",
            "agent.loop",
            (1, 2),
            mcp_tools=("crm_lookup", "ticket_update"),
            delegations=(Delegation("ticket-classifier", 0.8, 1), Delegation("kb-retriever", 0.5, 1)),
        ),
        AgentProfile(
            "web-researcher",
            _pods("web-researcher", "research", ["node-b", "node-c"], 3),
            (GPT_4O_MINI, CLAUDE_HAIKU),
            "genai",
            "invoke_agent",
            (1, 3),
            tools=("web_search", "fetch_url"),
            delegations=(Delegation("summarizer", 0.2, 1),),
            reports_rollup=True,
        ),
        AgentProfile(
            "summarizer",
            _pods("summarizer", "research", ["node-c"], 1),
            (CLAUDE_HAIKU,),
            "openinference",
            "invoke_agent",
            (1, 1),
        ),
        AgentProfile(
            "code-runner",
            _pods("code-runner", "sandbox", ["node-c"], 2),
            (O4_MINI,),
            "genai-legacy",
            "agent.loop",
            (1, 2),
            tools=("run_python",),
        ),
        AgentProfile(
            "ticket-classifier",
            CLASSIFIER_PODS,
            (LLAMA_SELF_HOSTED,),
            "genai",
            "invoke_agent",
            (1, 2),
        ),
        AgentProfile(
            "kb-retriever",
            _pods("kb-retriever", "support", ["node-b"], 1),
            (GPT_4O_MINI,),
            "traceloop",
            "agent.loop",
            (1, 2),
            mcp_tools=("kb_search",),
            delegations=(Delegation("summarizer", 0.25, 1),),
        ),
    )
}

ORCHESTRATORS: tuple[tuple[str, float], ...] = (("research-planner", 0.6), ("support-triage", 0.4))
MAX_DEPTH = 3  # orchestrator = 0; a chain deeper than this stops delegating


# --- what the workload promises --------------------------------------------------------------------------


@dataclass
class UsageTotals:
    runs: int = 0
    llm_calls: int = 0
    input_tokens: int = 0  # includes cache read + cache write
    output_tokens: int = 0  # includes reasoning
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0

    def add_call(self, usage: dict[str, int]) -> None:
        self.llm_calls += 1
        self.input_tokens += usage["input"]
        self.output_tokens += usage["output"]
        self.cache_read_tokens += usage["cache_read"]
        self.cache_write_tokens += usage["cache_write"]
        self.reasoning_tokens += usage["reasoning"]


@dataclass
class AgentRun:
    """One node of a task tree: an agent run, its trace, and the runs it delegated to (linked traces)."""

    agent: str
    trace_id: str  # hex
    span_id: str  # hex of the agent span
    depth: int
    namespace: str
    pod: str
    start_ns: int
    end_ns: int
    usage: UsageTotals = field(default_factory=UsageTotals)  # this run's own LLM calls
    children: list[AgentRun] = field(default_factory=list)

    def inclusive(self) -> UsageTotals:
        total = UsageTotals()
        for run in self.walk():
            for key, value in asdict(run.usage).items():
                setattr(total, key, getattr(total, key) + value)
        return total

    def walk(self) -> Iterator[AgentRun]:
        yield self
        for child in self.children:
            yield from child.walk()

    def shape(self) -> dict[str, Any]:
        """The tree as plain data: agent names and ids, nested."""
        return {
            "agent": self.agent,
            "trace_id": self.trace_id,
            "span_id": self.span_id,
            "children": [c.shape() for c in self.children],
        }


@dataclass
class WorkloadResult:
    tasks_sent: int = 0
    spans_sent: int = 0
    traces_sent: int = 0  # agent traces (one per agent run) + noise traces
    noise_traces: int = 0  # health checks: no GenAI span, dropped by the receiver's default keep rule
    noise_spans: int = 0
    exported_spans: int = 0  # spans the exporter reported as delivered
    failed_spans: int = 0  # spans the exporter gave up on
    first_start_ns: int | None = None
    last_end_ns: int | None = None
    agents: dict[str, UsageTotals] = field(default_factory=dict)
    models: dict[str, UsageTotals] = field(default_factory=dict)  # by request model
    tasks: list[AgentRun] = field(default_factory=list)  # the orchestrator run of each task
    stopped_early: bool = False  # --max-seconds reached before every task was sent

    def total(self) -> UsageTotals:
        total = UsageTotals()
        for usage in self.agents.values():
            for key, value in asdict(usage).items():
                setattr(total, key, getattr(total, key) + value)
        return total

    def to_json(self) -> dict[str, Any]:
        return {
            "tasks_sent": self.tasks_sent,
            "spans_sent": self.spans_sent,
            "traces_sent": self.traces_sent,
            "noise_traces": self.noise_traces,
            "noise_spans": self.noise_spans,
            "exported_spans": self.exported_spans,
            "failed_spans": self.failed_spans,
            "stopped_early": self.stopped_early,
            "first_start": _iso(self.first_start_ns),
            "last_end": _iso(self.last_end_ns),
            "total": asdict(self.total()),
            "agents": {name: asdict(u) for name, u in sorted(self.agents.items())},
            "models": {  # by request model; "runs" belongs to agents
                name: {k: v for k, v in asdict(u).items() if k != "runs"} for name, u in sorted(self.models.items())
            },
            "tasks": [
                {
                    "task_id": task.trace_id,
                    "orchestrator": task.agent,
                    "agent_runs": sum(1 for _ in task.walk()),
                    "traces": sorted({run.trace_id for run in task.walk()}),
                    "inclusive": asdict(task.inclusive()),
                    "tree": task.shape(),
                }
                for task in self.tasks
            ],
        }


def _iso(ns: int | None) -> str | None:
    return None if ns is None else datetime.fromtimestamp(ns / NS_PER_S, UTC).isoformat()


# --- the SDK plumbing ------------------------------------------------------------------------------------


class SeededIdGenerator(IdGenerator):
    """Deterministic trace and span ids: a seed always gives the same ids (the SDK's default is random)."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)

    def generate_span_id(self) -> int:
        return self._rng.getrandbits(64) or 1

    def generate_trace_id(self) -> int:
        return self._rng.getrandbits(128) or 1


class CountingExporter(SpanExporter):
    """Wraps the real exporter to count what it delivered and what it gave up on."""

    def __init__(self, inner: SpanExporter) -> None:
        self.inner = inner
        self.exported = 0
        self.failed = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        result = self.inner.export(spans)
        if result is SpanExportResult.SUCCESS:
            self.exported += len(spans)
        else:
            self.failed += len(spans)
        return result

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


def make_exporter(endpoint: str, protocol: Protocol = "grpc", gzip: bool = False, timeout_s: float = 10.0):
    """The real OTLP span exporter for an endpoint ('HOST:PORT' or 'http://HOST:PORT[/v1/traces]')."""
    parse_endpoint(endpoint.split("://", 1)[-1].split("/", 1)[0])  # a readable ValueError for a bad endpoint
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import Compression, OTLPSpanExporter

        target = endpoint.split("://", 1)[-1].rstrip("/")
        return OTLPSpanExporter(
            endpoint=target,
            insecure=True,
            compression=Compression.Gzip if gzip else Compression.NoCompression,
            timeout=timeout_s,
        )
    if protocol == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http import Compression as HttpCompression
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter

        url = endpoint if "://" in endpoint else f"http://{endpoint}"
        if url.rstrip("/").count("/") < 3:  # no path given: the OTLP/HTTP default
            url = url.rstrip("/") + "/v1/traces"
        return HttpSpanExporter(
            endpoint=url,
            compression=HttpCompression.Gzip if gzip else HttpCompression.NoCompression,
            timeout=timeout_s,
        )
    raise ValueError(f"unknown protocol {protocol!r} (grpc or http/protobuf)")


@dataclass
class WorkloadSpec:
    tasks: int = 40
    seed: int = 1
    start: datetime | None = None  # simulated time of the first task (default: so the workload ends ~now)
    time_scale: float = 0.0  # simulated seconds per wall second between tasks; 0 = do not wait
    duration_scale: float = 1.0  # multiplies every simulated duration and gap (small = a short live burst)
    max_seconds: float = 60.0  # wall-clock guard: no new task after this long
    burst_size: tuple[int, int] = (2, 7)
    idle_gap_s: tuple[float, float] = (600.0, 6 * 3600.0)  # between bursts
    in_burst_gap_s: tuple[float, float] = (5.0, 90.0)  # between tasks of a burst


def default_start(spec: WorkloadSpec) -> datetime:
    """A start such that the simulated workload ends around now (it spans about a day per 30 tasks)."""
    mean_gap = (sum(spec.idle_gap_s) / 2) / (sum(spec.burst_size) / 2) + sum(spec.in_burst_gap_s) / 2
    span_s = spec.tasks * mean_gap * spec.duration_scale
    return (datetime.now(UTC) - timedelta(seconds=span_s)).replace(microsecond=0)


class _Emitter:
    """Creates the spans of agent runs on the simulated clock, one TracerProvider per pod (its resource)."""

    def __init__(
        self,
        spec: WorkloadSpec,
        exporter_factory: Callable[[], SpanExporter],
        result: WorkloadResult,
    ) -> None:
        self.spec = spec
        self.rng = random.Random(spec.seed)
        self.ids = SeededIdGenerator(spec.seed * 7919 + 17)
        self.exporter_factory = exporter_factory
        self.result = result
        self.providers: dict[Pod, tuple[TracerProvider, Tracer, CountingExporter]] = {}
        self.calls = 0

    def tracer(self, pod: Pod) -> Tracer:
        if pod not in self.providers:
            resource = Resource.create(
                {
                    service_attributes.SERVICE_NAME: pod.service,
                    k8s.K8S_NAMESPACE_NAME: pod.namespace,
                    k8s.K8S_POD_NAME: pod.name,
                    k8s.K8S_NODE_NAME: pod.node,
                    k8s.K8S_CONTAINER_NAME: pod.container,
                    "service.instance.id": f"{pod.namespace}/{pod.name}",  # the SDK's default is random
                    "deployment.environment.name": "demo",
                }
            )
            provider = TracerProvider(resource=resource, id_generator=self.ids)
            exporter = CountingExporter(self.exporter_factory())
            provider.add_span_processor(
                BatchSpanProcessor(exporter, max_queue_size=65536, schedule_delay_millis=200, max_export_batch_size=512)
            )
            self.providers[pod] = (provider, provider.get_tracer("agentmeter.loadgen", "0.1.0"), exporter)
        return self.providers[pod][1]

    def shutdown(self) -> None:
        for provider, _, exporter in self.providers.values():
            provider.force_flush()
            provider.shutdown()
            self.result.exported_spans += exporter.exported
            self.result.failed_spans += exporter.failed

    def seconds(self, low: float, high: float) -> int:
        """A simulated duration in ns."""
        return int(self.rng.uniform(low, high) * self.spec.duration_scale * NS_PER_S)

    def _count(self, start_ns: int, end_ns: int, spans: int = 1) -> None:
        self.result.spans_sent += spans
        first = self.result.first_start_ns
        self.result.first_start_ns = start_ns if first is None else min(first, start_ns)
        last = self.result.last_end_ns
        self.result.last_end_ns = end_ns if last is None else max(last, end_ns)

    # --- one agent run (one trace), recursively its delegations (linked traces) ---

    def agent_run(self, name: str, start_ns: int, depth: int, link_to: SpanContext | None) -> AgentRun:
        profile = AGENTS[name]
        pod = self.rng.choice(profile.pods)
        tracer = self.tracer(pod)
        self.result.traces_sent += 1
        attributes: dict[str, Any] = {
            gen_ai.GEN_AI_OPERATION_NAME: "invoke_agent",
            gen_ai.GEN_AI_AGENT_NAME: name,
            gen_ai.GEN_AI_AGENT_ID: f"{name}-{self.rng.getrandbits(32):08x}",
        }
        span_name = f"invoke_agent {name}" if profile.agent_span == "invoke_agent" else "agent.loop"
        links = [Link(link_to, {"agentmeter.link.type": "delegated_from"})] if link_to is not None else []
        agent_span = tracer.start_span(
            span_name,
            context=Context(),
            kind=SpanKind.INTERNAL,
            attributes=attributes,
            links=links,
            start_time=start_ns,
        )
        ctx = set_span_in_context(agent_span, Context())
        run = AgentRun(
            agent=name,
            trace_id=f"{agent_span.get_span_context().trace_id:032x}",
            span_id=f"{agent_span.get_span_context().span_id:016x}",
            depth=depth,
            namespace=pod.namespace,
            pod=pod.name,
            start_ns=start_ns,
            end_ns=start_ns,
        )
        run.usage.runs = 1
        t = start_ns + self.seconds(0.01, 0.2)
        delegated: dict[str, int] = {}
        for _ in range(self.rng.randint(*profile.steps)):
            t = self.llm_call(tracer, ctx, profile, t, run)
            if profile.tools and self.rng.random() < 0.5:
                t = self.tool_call(tracer, ctx, self.rng.choice(profile.tools), t, mcp=False)
            if profile.mcp_tools and self.rng.random() < 0.5:
                t = self.tool_call(tracer, ctx, self.rng.choice(profile.mcp_tools), t, mcp=True)
            for delegation in profile.delegations:
                if (
                    depth < MAX_DEPTH
                    and delegated.get(delegation.agent, 0) < delegation.max_per_run
                    and self.rng.random() < delegation.probability
                ):
                    delegated[delegation.agent] = delegated.get(delegation.agent, 0) + 1
                    t = self.delegate(tracer, ctx, delegation.agent, t, depth, run)
        if profile.reports_rollup:
            # some frameworks repeat the usage of the run's calls on the agent span: a rollup, not new usage
            agent_span.set_attribute(gen_ai.GEN_AI_USAGE_INPUT_TOKENS, run.usage.input_tokens)
            agent_span.set_attribute(gen_ai.GEN_AI_USAGE_OUTPUT_TOKENS, run.usage.output_tokens)
        end = t + self.seconds(0.01, 0.3)
        agent_span.end(end_time=end)
        self._count(start_ns, end)
        run.end_ns = end
        self.result.agents.setdefault(name, UsageTotals()).runs += 1
        return run

    def delegate(self, tracer: Tracer, ctx: Context, sub_agent: str, t: int, depth: int, run: AgentRun) -> int:
        span = tracer.start_span(
            f"delegate {sub_agent}",
            context=ctx,
            kind=SpanKind.CLIENT,
            attributes={"agentmeter.delegate.agent": sub_agent},
            start_time=t,
        )
        cold_start = self.seconds(0.05, 2.5)  # the sub-agent's pod picks the request up
        child = self.agent_run(sub_agent, t + cold_start, depth + 1, span.get_span_context())
        run.children.append(child)
        end = child.end_ns + self.seconds(0.005, 0.05)
        span.end(end_time=end)
        self._count(t, end)
        return end

    def tool_call(self, tracer: Tracer, ctx: Context, tool: str, t: int, mcp: bool) -> int:
        if mcp:  # the seed's MCP dialect: the span name carries the tool
            name, attributes = f"mcp.tool.{tool}", {"mcp.method.name": "tools/call", "mcp.tool.name": tool}
        else:
            name = f"execute_tool {tool}"
            attributes = {
                gen_ai.GEN_AI_OPERATION_NAME: "execute_tool",
                gen_ai.GEN_AI_TOOL_NAME: tool,
                gen_ai.GEN_AI_TOOL_CALL_ID: f"call_{self.rng.getrandbits(48):012x}",
            }
        span = tracer.start_span(name, context=ctx, kind=SpanKind.INTERNAL, attributes=attributes, start_time=t)
        if self.rng.random() < 0.05:
            span.set_status(Status(StatusCode.ERROR, "tool timed out"))
        end = t + self.seconds(0.05, 3.0)
        span.end(end_time=end)
        self._count(t, end)
        return end + self.seconds(0.001, 0.05)

    def usage(self, model: Model) -> dict[str, int]:
        rng = self.rng
        fresh_input = rng.randint(150, 6000)
        cache_read = rng.randint(512, 8192) if model.cache and rng.random() < 0.6 else 0
        cache_write = (
            rng.randint(256, 4096) if model.cache and model.provider == "anthropic" and rng.random() < 0.3 else 0
        )
        output = rng.randint(20, 1500)
        reasoning = rng.randint(10, output) if model.reasoning and rng.random() < 0.7 else 0
        return {
            "input": fresh_input + cache_read + cache_write,
            "output": output,
            "cache_read": cache_read,
            "cache_write": cache_write,
            "reasoning": reasoning,
        }

    def llm_call(self, tracer: Tracer, ctx: Context, profile: AgentProfile, t: int, run: AgentRun) -> int:
        model = self.rng.choice(profile.models)
        usage = self.usage(model)
        self.calls += 1
        response_id = f"resp_{self.spec.seed}_{self.calls:07d}_{self.rng.getrandbits(32):08x}"
        name, kind, attributes = llm_span_attributes(profile.dialect, model, usage, response_id)
        span = tracer.start_span(name, context=ctx, kind=kind, attributes=attributes, start_time=t)
        end = t + self.seconds(0.4, 9.0)
        span.end(end_time=end)
        self._count(t, end)
        run.usage.add_call(usage)
        self.result.agents.setdefault(profile.name, UsageTotals()).add_call(usage)
        self.result.models.setdefault(model.request_model, UsageTotals()).add_call(usage)
        return end + self.seconds(0.001, 0.2)

    def health_check(self, t: int) -> None:
        """A trace without any GenAI span (kubelet probe): the receiver drops it by default."""
        pod = self.rng.choice(AGENTS["research-planner"].pods)
        span = self.tracer(pod).start_span(
            "GET /healthz",
            context=Context(),
            kind=SpanKind.SERVER,
            attributes={"http.request.method": "GET", "url.path": "/healthz", "http.response.status_code": 200},
            start_time=t,
        )
        end = t + self.seconds(0.001, 0.01)
        span.end(end_time=end)
        self._count(t, end)
        self.result.noise_traces += 1
        self.result.noise_spans += 1
        self.result.traces_sent += 1


def llm_span_attributes(
    dialect: str, model: Model, usage: dict[str, int], response_id: str
) -> tuple[str, SpanKind, dict[str, Any]]:
    """Name, kind and attributes of one LLM call as the given instrumentation dialect reports it."""
    if dialect == "genai":
        attributes: dict[str, Any] = {
            gen_ai.GEN_AI_OPERATION_NAME: "chat",
            gen_ai.GEN_AI_PROVIDER_NAME: model.provider,
            gen_ai.GEN_AI_REQUEST_MODEL: model.request_model,
            gen_ai.GEN_AI_RESPONSE_MODEL: model.response_model,
            gen_ai.GEN_AI_RESPONSE_ID: response_id,
            gen_ai.GEN_AI_RESPONSE_FINISH_REASONS: ("stop",),
            gen_ai.GEN_AI_USAGE_INPUT_TOKENS: usage["input"],
            gen_ai.GEN_AI_USAGE_OUTPUT_TOKENS: usage["output"],
        }
        if model.cache:
            attributes[gen_ai.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] = usage["cache_read"]
            attributes[gen_ai.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS] = usage["cache_write"]
        if model.reasoning:
            attributes[gen_ai.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS] = usage["reasoning"]
        return f"chat {model.request_model}", SpanKind.CLIENT, attributes
    if dialect == "genai-legacy":  # older semconv: gen_ai.system and prompt/completion token names
        attributes = {
            gen_ai.GEN_AI_OPERATION_NAME: "chat",
            gen_ai.GEN_AI_SYSTEM: model.provider,
            gen_ai.GEN_AI_REQUEST_MODEL: model.request_model,
            gen_ai.GEN_AI_RESPONSE_MODEL: model.response_model,
            gen_ai.GEN_AI_RESPONSE_ID: response_id,
            gen_ai.GEN_AI_USAGE_PROMPT_TOKENS: usage["input"],
            gen_ai.GEN_AI_USAGE_COMPLETION_TOKENS: usage["output"],
        }
        if model.cache:
            attributes[gen_ai.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] = usage["cache_read"]
        if model.reasoning:
            attributes[gen_ai.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS] = usage["reasoning"]
        return f"chat {model.request_model}", SpanKind.CLIENT, attributes
    if dialect == "openinference":  # Arize OpenInference: prompt includes cache, completion includes reasoning
        attributes = {
            "openinference.span.kind": "LLM",
            "llm.system": model.provider,
            "llm.provider": model.provider,
            "llm.model_name": model.response_model,
            "llm.token_count.prompt": usage["input"],
            "llm.token_count.completion": usage["output"],
            "llm.token_count.total": usage["input"] + usage["output"],
            "llm.token_count.prompt_details.cache_read": usage["cache_read"],
            "llm.token_count.prompt_details.cache_write": usage["cache_write"],
            "llm.token_count.completion_details.reasoning": usage["reasoning"],
        }
        return "ChatCompletion", SpanKind.INTERNAL, attributes
    if dialect == "traceloop":  # OpenLLMetry 0.40 (legacy): gen_ai.system, prompt/completion, llm.usage.total
        attributes = {
            "llm.request.type": "chat",
            gen_ai.GEN_AI_SYSTEM: "OpenAI" if model.provider == "openai" else model.provider,
            gen_ai.GEN_AI_REQUEST_MODEL: model.request_model,
            gen_ai.GEN_AI_RESPONSE_MODEL: model.response_model,
            gen_ai.GEN_AI_RESPONSE_ID: response_id,
            gen_ai.GEN_AI_USAGE_PROMPT_TOKENS: usage["input"],
            gen_ai.GEN_AI_USAGE_COMPLETION_TOKENS: usage["output"],
            "llm.usage.total_tokens": usage["input"] + usage["output"],
            "gen_ai.usage.cache_read_input_tokens": usage["cache_read"],
        }
        return f"{model.provider}.chat", SpanKind.CLIENT, attributes
    raise ValueError(f"unknown dialect {dialect!r}")


def _pick_orchestrator(rng: random.Random) -> str:
    names, weights = zip(*ORCHESTRATORS, strict=True)
    return rng.choices(names, weights)[0]


def run_workload(
    spec: WorkloadSpec,
    exporter_factory: Callable[[], SpanExporter],
    *,
    sleep: Callable[[float], None] = time.sleep,
    on_task: Callable[[int], None] | None = None,
) -> WorkloadResult:
    """Send the workload through a TracerProvider per pod; return what was sent and the expected totals.

    `exporter_factory` makes one real exporter per pod (e.g. `lambda: make_exporter(endpoint)`). All
    providers are flushed and shut down before this returns, so every span has been exported (or failed).
    """
    if spec.tasks < 0:
        raise ValueError("tasks must be >= 0")
    if spec.max_seconds <= 0:
        raise ValueError("max-seconds must be > 0")
    if spec.time_scale < 0 or spec.duration_scale <= 0:
        raise ValueError("time-scale must be >= 0 and duration-scale > 0")
    result = WorkloadResult()
    emitter = _Emitter(spec, exporter_factory, result)
    rng = emitter.rng
    start = spec.start or default_start(spec)
    clock = int(start.timestamp() * NS_PER_S)
    wall_start = time.monotonic()
    left_in_burst = 0
    try:
        for index in range(spec.tasks):
            gap_ns = 0
            if index > 0:
                if left_in_burst == 0:
                    gap_ns = emitter.seconds(*spec.idle_gap_s)
                else:
                    gap_ns = emitter.seconds(*spec.in_burst_gap_s)
            if left_in_burst == 0:
                left_in_burst = rng.randint(*spec.burst_size)
            left_in_burst -= 1
            if spec.time_scale > 0 and gap_ns:
                remaining = spec.max_seconds - (time.monotonic() - wall_start)
                sleep(max(0.0, min(gap_ns / NS_PER_S / spec.time_scale, remaining)))
            if time.monotonic() - wall_start >= spec.max_seconds:
                result.stopped_early = True
                break
            clock += gap_ns
            if left_in_burst == 0:  # a probe hits an orchestrator pod once per burst
                emitter.health_check(clock + emitter.seconds(0.5, 3.0))
            task = emitter.agent_run(_pick_orchestrator(rng), clock, 0, None)
            result.tasks.append(task)
            result.tasks_sent += 1
            if on_task is not None:
                on_task(index)
    finally:
        emitter.shutdown()
    return result
