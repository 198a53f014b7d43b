"""Real frameworks' spans (tests/frameworks/captures, or FRAMEWORK_CAPTURES from `make test-frameworks`)
replayed into a real receiver over real gRPC and held against the fake server's log: calls, tokens, cost
(genai-prices' calc_price, stored at capture time), agent names, tasks and trees, the linked sub-agent trace
included.

Where an instrumentation itself reports something other than what was served, `REPORTED` says what it
reports (README "Agent frameworks"), and the test holds agentmeter to exactly that: the numbers a user can
trust are the served ones, the others are the instrumentation's.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

import pytest
from genai_prices import Usage, calc_price
from replay import Readback, capture_names, replay, served_totals, truth_of

Call = dict


def served(call: Call) -> dict | None:
    return call["usage"]


def no_reasoning(call: Call) -> dict | None:  # strands: its OpenAI adapter never reads reasoning tokens
    return {**call["usage"], "reasoning": 0}


def reasoning_twice(call: Call) -> dict | None:  # google-adk's LiteLLM adapter: output + reasoning again
    usage = call["usage"]
    return {**usage, "output": usage["output"] + usage["reasoning"]}


def chat_path_of_openinference_agents(call: Call) -> dict | None:
    # OpenInference openai-agents, Chat Completions: no cache, no reasoning; streamed calls carry no usage
    if call["stream"]:
        return None
    return {**call["usage"], "cached": 0, "reasoning": 0}


def no_usage(call: Call) -> dict | None:  # Traceloop openai-agents, Chat Completions: no usage at all
    return None


REPORTED: dict[str, Callable[[Call], dict | None]] = {
    "pydantic-ai__native__chat": served,
    "strands__native__chat": no_reasoning,
    "openai-agents__openinference__responses": served,
    "openai-agents__openinference__chat": chat_path_of_openinference_agents,
    "openai-agents__traceloop__responses": served,
    "openai-agents__traceloop__chat": no_usage,
    "openai-agents__both__responses": served,
    "langgraph__openinference-langchain__chat": served,
    "google-adk__native-litellm__chat": reasoning_twice,
}
# Two instrumentations of one run: each makes its own trace of every run, sharing the calls' response ids;
# task resolution merges them into one task (stitch state shared_calls) where each run appears twice.
BOTH = "openai-agents__both__responses"
_READBACKS: dict[str, Readback] = {}


@pytest.fixture
def readback(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Readback:
    name = request.param
    if name not in _READBACKS:  # one replay per capture, shared by its tests
        _READBACKS[name] = replay(name, tmp_path_factory.mktemp(name) / "dataset")
    return _READBACKS[name]


def reported_cost(call: Call, usage: dict) -> Decimal:
    if usage == call["usage"]:
        return Decimal(call["cost_usd"])  # genai-prices at capture time
    return calc_price(
        Usage(input_tokens=usage["input"], cache_read_tokens=usage["cached"], output_tokens=usage["output"],
              output_reasoning_tokens=usage["reasoning"]),
        call["response_model"], provider_id="openai",
    ).total_price  # fmt: skip


def expected_by_agent(name: str) -> dict[str, dict]:
    expected: dict[str, dict] = {}
    for call in truth_of(name)["calls"]:
        row = expected.setdefault(call["agent"], dict.fromkeys(
            ("llm_calls", "input_tokens", "output_tokens", "cache_read_tokens", "reasoning_tokens",
             "calls_without_usage"), 0
        ) | {"cost_usd": Decimal(0)})  # fmt: skip
        row["llm_calls"] += 1  # a call that reported no usage is a call too (analyzer/figures.py)
        usage = REPORTED[name](call)
        if usage is None:
            row["calls_without_usage"] += 1
            continue
        row["input_tokens"] += usage["input"]
        row["output_tokens"] += usage["output"]
        row["cache_read_tokens"] += usage["cached"]
        row["reasoning_tokens"] += usage["reasoning"]
        row["cost_usd"] += reported_cost(call, usage)
    return expected


NAMES = capture_names()


def test_every_capture_is_checked() -> None:
    assert set(NAMES) == set(REPORTED), "a capture without its REPORTED rule (or a rule without its capture)"
    assert len(NAMES) == 9


@pytest.mark.parametrize("readback", NAMES, indirect=True)
def test_no_span_is_rejected_and_the_truth_is_the_scenario(readback: Readback, request) -> None:
    name = request.node.callspec.params["readback"]
    truth = truth_of(name)
    assert readback.rejected == 0
    assert served_totals(truth["calls"])["llm_calls"] == 25
    assert [t["calls"] for t in truth["tasks"].values()] == [5, 5, 5, 5, 5]


@pytest.mark.parametrize("readback", NAMES, indirect=True)
def test_calls_tokens_and_cost_by_agent(readback: Readback, request) -> None:
    name = request.node.callspec.params["readback"]
    expected = expected_by_agent(name)
    fields = (
        "llm_calls",
        "input_tokens",
        "output_tokens",
        "cache_read_tokens",
        "reasoning_tokens",
        "calls_without_usage",
    )
    got = {agent: {f: row[f] for f in fields} for agent, row in readback.by_agent.items()}
    want = {agent: {f: row[f] for f in fields} for agent, row in expected.items()}
    assert got == want  # two instrumentations of one run: either copy of a call is on the same agent
    total = sum((row["token_cost_usd"] or Decimal(0) for row in readback.by_agent.values()), Decimal(0))
    assert total == sum((row["cost_usd"] for row in expected.values()), Decimal(0))
    assert all(row["unpriced_calls"] == 0 for row in readback.by_agent.values())


def runs_with_calls(node: dict, caller: str | None = None) -> list[tuple[str, str | None, int]]:
    """(agent, the agent it runs under, its own calls) of every run of a tree that made calls, in tree order:
    the agent it runs under is the nearest run above of another agent (None: none)."""
    found = [(node["agent"], caller, node["direct"]["llm_calls"])] if node["direct"]["llm_calls"] else []
    for child in node["children"]:
        found += runs_with_calls(child, node["agent"] if child["agent"] != node["agent"] else caller)
    return found


@pytest.mark.parametrize("readback", NAMES, indirect=True)
def test_tasks_and_trees(readback: Readback, request) -> None:
    name = request.node.callspec.params["readback"]
    truth = truth_of(name)
    assert len(readback.tasks) == len(truth["tasks"]) == 5
    in_order = sorted(readback.tasks, key=lambda t: t["start"])
    for task, (task_name, spec) in zip(in_order, truth["tasks"].items(), strict=True):
        assert task["root_agent"] == "orchestrator", task_name
        assert task["llm_calls"] == spec["calls"], task_name
        root = readback.trees[task["task_id"]]["root"]
        expected = [(spec["tree"]["agent"], None, spec["tree"]["calls"])]
        expected += [(c["agent"], spec["tree"]["agent"], c["calls"]) for c in spec["tree"]["children"]]
        assert runs_with_calls(root) == expected, task_name  # each agent's calls under the agent that called it
        if name == BOTH:  # one instrumentation's trace (and runs) beside the other's, merged by their calls
            assert (task["traces"], task["stitch_state"]) == (3 if spec["queued"] else 2, "shared_calls"), task_name
            continue
        assert task["traces"] == (2 if spec["queued"] else 1), task_name
        assert task["stitch_state"] == "ok"
        shape = {
            "agent": root["agent"],
            "calls": root["direct"]["llm_calls"],
            "children": [
                {
                    "agent": c["agent"],
                    "calls": c["direct"]["llm_calls"],
                    "linked_trace": c["trace_id"] != root["trace_id"],
                }
                for c in root["children"]
            ],
        }
        assert shape == spec["tree"], task_name
        assert all(not c["children"] for c in root["children"])


@pytest.mark.parametrize("readback", NAMES, indirect=True)
def test_calls_are_shown_under_the_provider_that_served_them(readback: Readback, request) -> None:
    # whatever the span called the provider (strands-agents, nothing, LiteLLM's openai/ prefix): the fake
    # server is OpenAI's API, and the models are the ones asked for or served, never prefixed
    calls = truth_of(request.node.callspec.params["readback"])["calls"]
    assert {provider for provider, _ in readback.by_model} == {"openai"}
    assert {model for _, model in readback.by_model} <= {
        c[k] for c in calls for k in ("request_model", "response_model")
    }
    assert sum(row["llm_calls"] for row in readback.by_model.values()) == 25


@pytest.mark.parametrize("readback", NAMES, indirect=True)
def test_idle_arrivals_are_agent_runs(readback: Readback, request) -> None:
    # one arrival per agent run (analyze idle, the KEDA and warm-pool curves): a LangGraph agent's steps,
    # a wrapper around the run, are none
    name = request.node.callspec.params["readback"]
    runs: dict[str, int] = {}
    for spec in truth_of(name)["tasks"].values():
        for agent in [spec["tree"]["agent"], *(c["agent"] for c in spec["tree"]["children"])]:
            runs[agent] = runs.get(agent, 0) + 1
    if name == BOTH:  # each instrumentation reports each run
        runs = {agent: 2 * count for agent, count in runs.items()}
    assert readback.arrivals == runs


@pytest.mark.parametrize("readback", [BOTH], indirect=True)
def test_two_instrumentations_count_every_call_once(readback: Readback) -> None:
    # each run is two unlinked traces (one per instrumentation) sharing every call's response id: the calls
    # and tokens count once, and task resolution merges the traces sharing calls: one task per run
    assert sum(row["llm_calls"] for row in readback.by_agent.values()) == 25
    assert [(t["root_agent"], t["llm_calls"], t["stitch_state"]) for t in readback.tasks] == [
        ("orchestrator", 5, "shared_calls")
    ] * 5
    assert sorted(t["traces"] for t in readback.tasks) == [2, 2, 2, 2, 3]  # the queued researcher: a linked trace
