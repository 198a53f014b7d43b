"""strands-agents with its native OpenTelemetry tracing (the global tracer provider), OpenAI Chat Completions.

Agent-as-tool: strands' own `Agent.as_tool(name=...)`. The queued task's orchestrator has instead a plain
`@tool` that runs the researcher as a job in a new, linked trace. Streaming task: `OpenAIModel(stream=True)`
(the other tasks `stream=False`).
"""

from __future__ import annotations

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
from strands import Agent, tool
from strands.models.openai import OpenAIModel


@tool(name="search")
def search_tool(query: str) -> str:
    """Search the web.

    Args:
        query: what to search for
    """
    return search(query)


def main() -> None:
    config = settings()
    provider = setup_tracing("strands-app")
    client_args = {"base_url": config.openai_base_url, "api_key": "sk-fake"}

    def model(model_id: str, stream: bool) -> OpenAIModel:
        return OpenAIModel(client_args=client_args, model_id=model_id, stream=stream)

    for task in TASKS:
        announce(task)
        researcher = Agent(
            name=RESEARCHER,
            model=model(RESEARCHER_MODEL, task.stream),
            system_prompt=RESEARCHER_INSTRUCTIONS,
            tools=[search_tool],
            callback_handler=None,
        )
        if task.queued:

            @tool(name=RESEARCH_TOOL, description=RESEARCH_TOOL_DESCRIPTION)
            def research_job(input: str) -> str:  # noqa: A002 (the parameter name as_tool uses)
                with start_job_span(capture_context()):
                    return str(researcher(input))  # noqa: B023 (called within this iteration)

            delegate = research_job
        else:
            delegate = researcher.as_tool(name=RESEARCH_TOOL, description=RESEARCH_TOOL_DESCRIPTION)
        orchestrator = Agent(
            name=ORCHESTRATOR,
            model=model(ORCHESTRATOR_MODEL, task.stream),
            system_prompt=ORCHESTRATOR_INSTRUCTIONS,
            tools=[delegate],
            callback_handler=None,
        )
        orchestrator(task.question)
    finish(provider, "strands-agents", ["strands-agents", *OTEL_PACKAGES])


if __name__ == "__main__":
    main()
