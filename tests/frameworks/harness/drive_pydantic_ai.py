"""pydantic-ai with its native OpenTelemetry instrumentation (`Agent.instrument_all`), Chat Completions.

Agent-as-tool: pydantic-ai's "agent delegation" (the orchestrator's tool runs the researcher agent and passes
its `ctx.usage`). Streaming task: `run_stream` for both agents.
"""

from __future__ import annotations

import asyncio

from common import (
    ORCHESTRATOR,
    ORCHESTRATOR_INSTRUCTIONS,
    ORCHESTRATOR_MODEL,
    OTEL_PACKAGES,
    RESEARCHER,
    RESEARCHER_INSTRUCTIONS,
    RESEARCHER_MODEL,
    TASKS,
    Task,
    announce,
    capture_context,
    finish,
    search,
    settings,
    setup_tracing,
    start_job_span,
)
from pydantic_ai import Agent, RunContext
from pydantic_ai.models.instrumented import InstrumentationSettings
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.providers.openai import OpenAIProvider


def main() -> None:
    config = settings()
    provider = setup_tracing("pydantic-ai-app")
    Agent.instrument_all(InstrumentationSettings(tracer_provider=provider))
    openai_provider = OpenAIProvider(base_url=config.openai_base_url, api_key="sk-fake")
    researcher = Agent(
        OpenAIChatModel(RESEARCHER_MODEL, provider=openai_provider),
        name=RESEARCHER,
        instructions=RESEARCHER_INSTRUCTIONS,
    )
    orchestrator = Agent(
        OpenAIChatModel(ORCHESTRATOR_MODEL, provider=openai_provider),
        name=ORCHESTRATOR,
        instructions=ORCHESTRATOR_INSTRUCTIONS,
    )
    current: list[Task] = []

    @researcher.tool_plain(name="search")
    def search_tool(query: str) -> str:
        """Search the web."""
        return search(query)

    async def run_agent(agent: Agent, prompt: str, stream: bool, **kwargs) -> str:
        if stream:
            async with agent.run_stream(prompt, **kwargs) as result:
                return await result.get_output()
        return (await agent.run(prompt, **kwargs)).output

    @orchestrator.tool(name="research")
    async def research(ctx: RunContext[None], query: str) -> str:
        """Ask the researcher agent to research a topic."""
        task = current[-1]
        if task.queued:
            with start_job_span(capture_context()):  # a queued job: a new, linked trace
                return await run_agent(researcher, query, task.stream)
        return await run_agent(researcher, query, task.stream, usage=ctx.usage)

    async def run_all() -> None:
        for task in TASKS:
            current.append(task)
            announce(task)
            await run_agent(orchestrator, task.question, task.stream)

    asyncio.run(run_all())
    finish(provider, "pydantic-ai", ["pydantic-ai-slim", *OTEL_PACKAGES])


if __name__ == "__main__":
    main()
