"""What every framework driver shares: the scenario, the OpenTelemetry SDK setup, the queued-job hop.

Imported by the drivers inside each framework's own virtual environment, so it needs only the standard
library and the OpenTelemetry SDK with its OTLP gRPC exporter (every requirements file pins them).

The scenario (tests/frameworks/README.md): an `orchestrator` agent on gpt-4.1 delegates to a `researcher`
agent on gpt-4o-mini through the framework's own agent-as-tool mechanism; the researcher searches twice
(a plain function tool) and answers. Five tasks, run one after the other:

* `stream`: the agents stream their model calls (where the framework can);
* `queued`: the researcher runs as a queued job: the orchestrator's tool captures the W3C trace context
  (`traceparent`), and the job starts a NEW trace whose root span carries a span link to that tool span.
"""

from __future__ import annotations

import importlib.metadata as metadata
import json
import os
import sys
import threading
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TypeVar

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

ORCHESTRATOR = "orchestrator"
RESEARCHER = "researcher"
ORCHESTRATOR_MODEL = "gpt-4.1"
RESEARCHER_MODEL = "gpt-4o-mini"
ORCHESTRATOR_INSTRUCTIONS = "You answer the user's question. Delegate all research to the research tool."
RESEARCHER_INSTRUCTIONS = "You research a topic with the search tool and report your findings."
RESEARCH_TOOL = "research"  # where the framework lets us name the agent-as-tool
RESEARCH_TOOL_DESCRIPTION = "Ask the researcher agent to research a topic."
JOB_SPAN = "researcher-job"  # the queued job's root span (its link points at the orchestrator's tool span)

T = TypeVar("T")


@dataclass(frozen=True)
class Task:
    name: str
    question: str
    stream: bool = False
    queued: bool = False


TASKS = (
    Task("t1", "What is the tallest mountain in Europe?"),
    Task("t2", "Which river is the longest in Africa?"),
    Task("t3", "When was the first transatlantic telegraph cable laid?", stream=True),
    Task("t4", "Who proposed continental drift?", queued=True),
    Task("t5", "What is the boiling point of water at 2000 m?"),
)


def search(query: str) -> str:
    """The researcher's plain function tool: a canned search result."""
    return f"Three sources about {query!r} agree."


@dataclass
class Settings:
    fake_url: str  # the fake OpenAI-compatible server, e.g. http://127.0.0.1:PORT
    otlp_endpoint: str  # host:port of the OTLP gRPC endpoint (the recording hop in front of the receiver)
    out: str  # directory for run.json
    variant: str  # the driver's variant (api, instrumentation), see each driver

    @property
    def openai_base_url(self) -> str:
        return self.fake_url + "/v1"


def settings() -> Settings:
    return Settings(
        fake_url=os.environ["FW_FAKE_URL"],
        otlp_endpoint=os.environ["FW_OTLP_ENDPOINT"],
        out=os.environ["FW_OUT"],
        variant=os.environ.get("FW_VARIANT", ""),
    )


def setup_tracing(service_name: str) -> TracerProvider:
    """The real OTel SDK: a BatchSpanProcessor with the OTLP gRPC exporter, set as the global provider."""
    config = settings()
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=config.otlp_endpoint, insecure=True)))
    trace.set_tracer_provider(provider)
    return provider


def announce(task: Task) -> None:
    """Tell the fake server which task the next calls belong to (its log is the truth)."""
    request = urllib.request.Request(
        settings().fake_url + "/control/task",
        data=json.dumps({"task": task.name}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()


def capture_context(span: trace.Span | None = None) -> dict[str, str]:
    """The W3C trace context of the current span (the orchestrator's tool span), as a job message carries it.

    `span`: the tool span, for instrumentations that do not make their spans current (OpenInference's
    LangChain tracer; its `get_current_span()` finds it)."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=trace.set_span_in_context(span) if span is not None else None)
    return carrier


def run_queued(carrier: dict[str, str], work: Callable[[], T]) -> T:
    """Run `work` as a queued job would: in another thread, which starts with empty context variables (no
    current span, no framework run state), knowing only the W3C context the job message carried."""
    results: list[T] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            results.append(run_as_job(carrier, work))
        except BaseException as err:  # noqa: BLE001 (handed to the caller)
            errors.append(err)

    thread = threading.Thread(target=worker, name="queued-job")
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return results[0]


def start_job_span(carrier: dict[str, str]):
    """The queued job's root span: a NEW trace (empty parent context) linked to the span in `carrier`.

    Returns a context manager; the researcher agent runs inside it."""
    linked = trace.get_current_span(propagate.extract(carrier)).get_span_context()
    tracer = trace.get_tracer("agentmeter.frameworks.job")
    return tracer.start_as_current_span(
        JOB_SPAN, context=otel_context.Context(), links=[trace.Link(linked)], kind=trace.SpanKind.CONSUMER
    )


def run_as_job(carrier: dict[str, str], work: Callable[[], T]) -> T:
    with start_job_span(carrier):
        return work()


def finish(provider: TracerProvider, framework: str, packages: list[str], notes: dict | None = None) -> None:
    """Flush every span to the receiver and write run.json (what ran, with which package versions)."""
    provider.force_flush()
    provider.shutdown()
    config = settings()
    versions = {}
    for name in packages:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    run = {
        "framework": framework,
        "variant": config.variant,
        "python": sys.version.split()[0],
        "packages": versions,
        "tasks": [asdict(t) for t in TASKS],
        "notes": notes or {},
    }
    with open(os.path.join(config.out, "run.json"), "w", encoding="utf-8") as out:
        json.dump(run, out, indent=1)
        out.write("\n")


OTEL_PACKAGES = ["opentelemetry-api", "opentelemetry-sdk", "opentelemetry-exporter-otlp-proto-grpc", "openai"]
