"""Replay a framework capture into a real receiver and read it back through the analyzer.

A capture (tests/frameworks/captures/<name>/, or a fresh one from `make test-frameworks`) holds the OTLP
Export requests exactly as the receiver got them (`requests/NNN.pb`) and its truth (`truth.json`, from the
fake server's log). `replay(capture, data_dir)` sends the requests, in order, over real gRPC to a real
`collector-ext serve`, stops it (SIGTERM writes every held trace) and returns what the analyzer says:
cost by agent, the task listing and every task's tree.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from receiver_process import ReceiverProcess

from analyzer.analysis import Analysis
from analyzer.cost import CostQuery, cost_rows
from analyzer.dataset import open_dataset
from analyzer.idle import analyze_idle
from analyzer.task_queries import TaskQuery, list_tasks, task_tree

EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
COMMITTED = Path(__file__).resolve().parent / "captures"
CAPTURES = Path(os.environ["FRAMEWORK_CAPTURES"]) if os.environ.get("FRAMEWORK_CAPTURES") else COMMITTED


def capture_names() -> list[str]:
    return sorted(p.parent.name for p in CAPTURES.glob("*/truth.json"))


def truth_of(name: str) -> dict[str, Any]:
    return json.loads((CAPTURES / name / "truth.json").read_text())


@dataclass
class Readback:
    by_agent: dict[str | None, dict[str, Any]]  # analyze cost --by agent
    tasks: list[dict[str, Any]]  # analyze tasks
    trees: dict[str, dict[str, Any]]  # task id -> analyze task (json form)
    rejected: int  # spans the receiver rejected (partial_success)
    arrivals: dict[str, int]  # analyze idle --by agent: agent runs per agent
    by_model: dict[tuple[str | None, str | None], dict[str, Any]]  # analyze cost --by provider --by model


def send(endpoint: str, payloads: list[bytes]) -> int:
    rejected = 0
    with grpc.insecure_channel(endpoint) as channel:
        export = channel.unary_unary(EXPORT)  # raw bytes: the request exactly as captured
        for payload in payloads:
            answer = ExportTraceServiceResponse.FromString(export(payload, timeout=30))
            rejected += answer.partial_success.rejected_spans
    return rejected


def wait_until_written(receiver: ReceiverProcess, timeout_s: float = 30.0) -> None:
    """Until the receiver holds no trace (each whole, quiet for the grace period, then written), so that the
    stop writes nothing early (`shutdown_flush`). Bounded: the traces are complete, so this is quick."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if "agentmeter_traces_held 0.0" in receiver.metrics_text().splitlines():
            return
        time.sleep(0.05)
    raise AssertionError(f"the receiver still holds traces after {timeout_s} s")


def replay(name: str, data_dir: Path) -> Readback:
    payloads = [p.read_bytes() for p in sorted((CAPTURES / name / "requests").glob("*.pb"))]
    with ReceiverProcess(data_dir, "--keep", "all") as receiver:
        rejected = send(receiver.grpc_endpoint, payloads)
        wait_until_written(receiver)
    analysis = Analysis(open_dataset(data_dir))
    by_agent = {row["agent"]: row for row in cost_rows(analysis, CostQuery(by=["agent"])).rows}
    tasks = list_tasks(analysis, TaskQuery())
    trees = {t["task_id"]: task_tree(analysis, bytes.fromhex(t["task_id"])) for t in tasks}
    arrivals = {g.group: g.arrivals for g in analyze_idle(analysis.dataset, by="agent")}
    by_model = {
        (row["provider"], row["model"]): row for row in cost_rows(analysis, CostQuery(by=["provider", "model"])).rows
    }
    return Readback(by_agent, tasks, trees, rejected, arrivals, by_model)


def served_totals(calls: list[dict[str, Any]]) -> dict[str, Any]:
    """Totals of the served calls, in the analyzer's terms (input includes cached, output reasoning)."""
    return {
        "llm_calls": len(calls),
        "input_tokens": sum(c["usage"]["input"] for c in calls),
        "output_tokens": sum(c["usage"]["output"] for c in calls),
        "cache_read_tokens": sum(c["usage"]["cached"] for c in calls),
        "reasoning_tokens": sum(c["usage"]["reasoning"] for c in calls),
        "cost_usd": sum((Decimal(c["cost_usd"]) for c in calls), Decimal(0)),
    }
