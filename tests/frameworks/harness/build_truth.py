"""The truth of one capture, from the fake server's log alone: calls, tokens, cost, agents, tasks, trees.

Cost is genai-prices' own `calc_price` of each served call (provider openai, the dated response model, at
the call's time), computed here at capture time and stored, so the replay tests hold the analyzer's DuckDB
pricing against genai-prices without calling it themselves.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from genai_prices import Usage, calc_price

ORCHESTRATOR = "orchestrator"
RESEARCHER = "researcher"


def call_cost(record: dict) -> str:
    usage = record["usage"]
    priced = calc_price(
        Usage(
            input_tokens=usage["input"],
            cache_read_tokens=usage["cached"],
            output_tokens=usage["output"],
            output_reasoning_tokens=usage["reasoning"],
        ),
        record["response_model"],
        provider_id="openai",
        genai_request_timestamp=datetime.fromtimestamp(record["time_ns"] / 1e9, tz=UTC),
    )
    return str(priced.total_price)


def build_truth(log: Path, run_json: Path, name: str) -> dict:
    calls = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    run = json.loads(run_json.read_text())
    for call in calls:
        call["cost_usd"] = call_cost(call)
    tasks = {}
    for spec in run["tasks"]:
        mine = [c for c in calls if c["task"] == spec["name"]]
        by_agent = {agent: [c for c in mine if c["agent"] == agent] for agent in (ORCHESTRATOR, RESEARCHER)}
        tasks[spec["name"]] = {
            "stream": spec["stream"],
            "queued": spec["queued"],
            "calls": len(mine),
            "tree": {
                "agent": ORCHESTRATOR,
                "calls": len(by_agent[ORCHESTRATOR]),
                "children": [{"agent": RESEARCHER, "calls": len(by_agent[RESEARCHER]), "linked_trace": spec["queued"]}],
            },
        }
    return {
        "_about": (
            "The truth of one capture: every call the fake OpenAI server answered (usage as sent: input includes "
            "cached, output includes reasoning), its genai-prices cost (calc_price, provider openai, response "
            "model, call time), and per task the expected agent tree (orchestrator -> researcher; the queued "
            "task's researcher runs in a new trace linked to the orchestrator's tool span)."
        ),
        "capture": name,
        "framework": run["framework"],
        "variant": run["variant"],
        "packages": run["packages"],
        "calls": calls,
        "tasks": tasks,
    }
