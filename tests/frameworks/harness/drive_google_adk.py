"""google-adk with its native OpenTelemetry tracing, models through LiteLLM (`LiteLlm("openai/<model>")`).

Agent-as-tool: ADK's `AgentTool(agent=researcher)` (the tool is named after the agent). Streaming task:
`RunConfig(streaming_mode=SSE)`. Queued task: a function tool `research` that runs the researcher with its
own runner as a job in a new, linked trace.
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
    announce,
    capture_context,
    finish,
    search,
    settings,
    setup_tracing,
    start_job_span,
)
from google.adk.agents import LlmAgent
from google.adk.agents.run_config import RunConfig, StreamingMode
from google.adk.models.lite_llm import LiteLlm
from google.adk.runners import InMemoryRunner
from google.adk.tools.agent_tool import AgentTool
from google.genai import types

APP = "frameworks-harness"


def search_tool(query: str) -> str:
    """Search the web for a query."""
    return search(query)


async def run(agent: LlmAgent, prompt: str, stream: bool) -> str:
    runner = InMemoryRunner(agent=agent, app_name=APP)
    session = await runner.session_service.create_session(app_name=APP, user_id="user")
    config = RunConfig(streaming_mode=StreamingMode.SSE if stream else StreamingMode.NONE)
    message = types.Content(role="user", parts=[types.Part(text=prompt)])
    text = ""
    async for event in runner.run_async(user_id="user", session_id=session.id, new_message=message, run_config=config):
        if event.content and event.content.parts and event.content.parts[0].text:
            text = event.content.parts[0].text
    return text


def main() -> None:
    config = settings()
    provider = setup_tracing("google-adk-app")

    def model(name: str) -> LiteLlm:
        return LiteLlm(model=f"openai/{name}", api_base=config.openai_base_url, api_key="sk-fake")

    async def run_all() -> None:
        for task in TASKS:
            announce(task)
            researcher = LlmAgent(
                name=RESEARCHER, model=model(RESEARCHER_MODEL), instruction=RESEARCHER_INSTRUCTIONS, tools=[search_tool]
            )

            async def research(query: str) -> str:
                """Ask the researcher agent to research a topic."""
                with start_job_span(capture_context()):
                    return await run(researcher, query, task.stream)  # noqa: B023 (called within this iteration)  # noqa: B023 (called within this iteration)

            orchestrator = LlmAgent(
                name=ORCHESTRATOR,
                model=model(ORCHESTRATOR_MODEL),
                instruction=ORCHESTRATOR_INSTRUCTIONS,
                tools=[research if task.queued else AgentTool(agent=researcher)],
            )
            await run(orchestrator, task.question, task.stream)

    asyncio.run(run_all())
    finish(provider, "google-adk", ["google-adk", "litellm", *OTEL_PACKAGES])


if __name__ == "__main__":
    main()
