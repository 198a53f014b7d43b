"""openai-agents with OpenInference's and/or Traceloop's instrumentation, Responses or Chat Completions.

FW_VARIANT is `<instrumentations>:<api>`: instrumentations `openinference`, `traceloop` or both joined by `+`
(each registers a trace processor; OpenInference's is exclusive, so the SDK's own backend exporter is
dropped, and Traceloop's is added beside it or, alone, replaces the SDK's); api `responses`
(OpenAIResponsesModel) or `chat` (OpenAIChatCompletionsModel).

Agent-as-tool: the SDK's `Agent.as_tool(tool_name=...)`. Streaming task: `Runner.run_streamed` and the
sub-agent streamed through `as_tool(on_stream=...)`. Queued task: a `function_tool` that runs the researcher
in a new SDK trace (`agents.trace`) inside the job's root span (new OTel trace, linked).
"""

from __future__ import annotations

import asyncio
import contextvars

from agents import (
    Agent,
    OpenAIChatCompletionsModel,
    OpenAIResponsesModel,
    Runner,
    function_tool,
    trace,
)
from common import (
    ORCHESTRATOR,
    ORCHESTRATOR_INSTRUCTIONS,
    ORCHESTRATOR_MODEL,
    OTEL_PACKAGES,
    RESEARCH_TOOL,
    RESEARCH_TOOL_DESCRIPTION,
    RESEARCHER,
    RESEARCHER_INSTRUCTIONS,
    RESEARCHER_MODEL,
    TASKS,
    announce,
    capture_context,
    finish,
    search,
    settings,
    setup_tracing,
    start_job_span,
)
from openai import AsyncOpenAI


@function_tool(name_override="search")
def search_tool(query: str) -> str:
    """Search the web.

    Args:
        query: what to search for
    """
    return search(query)


def instrument(names: list[str], provider) -> None:
    for name in names:
        if name == "openinference":
            from openinference.instrumentation.openai_agents import OpenAIAgentsInstrumentor

            OpenAIAgentsInstrumentor().instrument(tracer_provider=provider)
        elif name == "traceloop":
            from opentelemetry.instrumentation.openai_agents import OpenAIAgentsInstrumentor

            OpenAIAgentsInstrumentor(replace_existing_processors=names == ["traceloop"]).instrument(
                tracer_provider=provider
            )
        else:
            raise SystemExit(f"unknown instrumentation {name!r}")


def main() -> None:
    config = settings()
    instrumentations, _, api = config.variant.partition(":")
    provider = setup_tracing("openai-agents-app")
    instrument(instrumentations.split("+"), provider)
    client = AsyncOpenAI(base_url=config.openai_base_url, api_key="sk-fake", max_retries=0)
    model_class = OpenAIResponsesModel if api == "responses" else OpenAIChatCompletionsModel
    researcher = Agent(
        name=RESEARCHER,
        instructions=RESEARCHER_INSTRUCTIONS,
        model=model_class(model=RESEARCHER_MODEL, openai_client=client),
        tools=[search_tool],
    )

    async def ignore(event) -> None:
        return None

    @function_tool(name_override=RESEARCH_TOOL, description_override=RESEARCH_TOOL_DESCRIPTION)
    async def research_job(query: str) -> str:
        """Ask the researcher agent to research a topic.

        Args:
            query: the topic
        """
        carrier = capture_context()

        async def job() -> str:  # a queued job: fresh context variables (no SDK trace), a new linked trace
            with start_job_span(carrier), trace("researcher job"):
                return str((await Runner.run(researcher, query)).final_output)

        return await asyncio.create_task(job(), context=contextvars.Context())

    def orchestrator(task) -> Agent:
        if task.queued:
            delegate = research_job
        else:
            delegate = researcher.as_tool(
                tool_name=RESEARCH_TOOL,
                tool_description=RESEARCH_TOOL_DESCRIPTION,
                on_stream=ignore if task.stream else None,
            )
        return Agent(
            name=ORCHESTRATOR,
            instructions=ORCHESTRATOR_INSTRUCTIONS,
            model=model_class(model=ORCHESTRATOR_MODEL, openai_client=client),
            tools=[delegate],
        )

    async def run_all() -> None:
        for task in TASKS:
            announce(task)
            if task.stream:
                result = Runner.run_streamed(orchestrator(task), task.question)
                async for _ in result.stream_events():
                    pass
            else:
                await Runner.run(orchestrator(task), task.question)

    asyncio.run(run_all())
    packages = ["openai-agents", "openinference-instrumentation-openai-agents",
                "opentelemetry-instrumentation-openai-agents"]  # fmt: skip
    finish(provider, "openai-agents", [*packages, *OTEL_PACKAGES])


if __name__ == "__main__":
    main()
