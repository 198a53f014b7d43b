"""LangGraph (prebuilt ReAct agents) + langchain-openai, traced by OpenInference's LangChain instrumentation.

Agent-as-tool: LangGraph's tool-calling multi-agent pattern: the orchestrator's `research` tool invokes the
researcher's compiled graph (`create_react_agent(..., name=...)`). Streaming task: `ChatOpenAI(streaming=True,
stream_usage=True)` and `graph.stream(...)`. Queued task: the tool runs the researcher graph as a job in a new,
linked trace.
"""

from __future__ import annotations

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
    run_queued,
    search,
    settings,
    setup_tracing,
)
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from langgraph.prebuilt import create_react_agent
from openinference.instrumentation.langchain import LangChainInstrumentor, get_current_span


@tool("search")
def search_tool(query: str) -> str:
    """Search the web."""
    return search(query)


def main() -> None:
    config = settings()
    provider = setup_tracing("langgraph-app")
    LangChainInstrumentor().instrument(tracer_provider=provider)

    def chat_model(model: str, stream: bool) -> ChatOpenAI:
        return ChatOpenAI(
            model=model, base_url=config.openai_base_url, api_key="sk-fake", streaming=stream, stream_usage=stream
        )

    for task in TASKS:
        announce(task)
        researcher = create_react_agent(
            chat_model(RESEARCHER_MODEL, task.stream), tools=[search_tool], prompt=RESEARCHER_INSTRUCTIONS,
            name=RESEARCHER,
        )  # fmt: skip

        def run_researcher(query: str) -> str:
            result = researcher.invoke({"messages": [("user", query)]})  # noqa: B023 (called within this iteration)
            return result["messages"][-1].content

        @tool("research")
        def research(query: str) -> str:
            """Ask the researcher agent to research a topic."""
            if task.queued:  # noqa: B023 (called within this iteration)
                # the tool span is not made current by OpenInference's LangChain tracer: ask it for the span
                return run_queued(capture_context(get_current_span()), lambda: run_researcher(query))
            return run_researcher(query)

        orchestrator = create_react_agent(
            chat_model(ORCHESTRATOR_MODEL, task.stream), tools=[research], prompt=ORCHESTRATOR_INSTRUCTIONS,
            name=ORCHESTRATOR,
        )  # fmt: skip
        state = {"messages": [("user", task.question)]}
        if task.stream:
            for _ in orchestrator.stream(state, stream_mode="messages"):
                pass
        else:
            orchestrator.invoke(state)
    packages = ["langgraph", "langchain-core", "langchain-openai", "openinference-instrumentation-langchain"]
    finish(provider, "langgraph", [*packages, *OTEL_PACKAGES])


if __name__ == "__main__":
    main()
