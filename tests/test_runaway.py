"""Runaway tasks, live and after the fact: the loadgen workload with its three runaway shapes (a sub-agent
spawning itself through linked traces, a retry storm, a tool loop) through the real OTel SDK into a real
receiver. Each runaway task is flagged while it is in flight (the receiver's /metrics, before the task's
orchestrator span has ended) and in the log, and `analyze runaway --format json` lists the same tasks for
the same reasons; no ordinary (bursty) task is flagged by either.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from receiver_process import ReceiverProcess

from collector_ext.demo.loadgen import RUNAWAY_SHAPES, WorkloadSpec, make_exporter, run_workload
from collector_ext.traces.runaway import RunawayThresholds, limit_for, quantile_cont

pytestmark = pytest.mark.slow

START = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
HISTORY_MIN = "20"  # so that the agents' own history sets limits within this workload
EXPECTED = {"spawn_loop": "depth", "retry_storm": "failed_calls", "tool_loop": "tool_repeats"}
ROOT = {"spawn_loop": "research-planner", "retry_storm": "support-triage", "tool_loop": "research-planner"}


def runaway_gauge(text: str) -> dict[tuple[str, str], float]:
    return {
        (s.labels["agent"], s.labels["reason"]): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "agentmeter_runaway_tasks"
    }


def test_runaway_shapes_are_flagged_live_and_after_the_fact(tmp_path: Path) -> None:
    data = tmp_path / "data"
    seen_in_flight: dict[str, dict[tuple[str, str], float]] = {}
    with ReceiverProcess(data, "--runaway-history-min-tasks", HISTORY_MIN) as receiver:

        def in_flight(shape: str, task_id: str, flush: Callable[[], None]) -> None:
            flush()  # every span of the task but its orchestrator's own: the task is still running
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                gauge = runaway_gauge(receiver.metrics_text())
                if gauge.get((ROOT[shape], EXPECTED[shape]), 0) >= 1:
                    seen_in_flight[shape] = gauge
                    return
                time.sleep(0.1)

        spec = WorkloadSpec(tasks=60, seed=21, start=START, runaway=RUNAWAY_SHAPES)
        result = run_workload(spec, lambda: make_exporter(receiver.grpc_endpoint), runaway_in_flight=in_flight)
        assert set(result.runaway) == set(RUNAWAY_SHAPES)
        deadline = time.monotonic() + 60
        while runaway_gauge(receiver.metrics_text()) and time.monotonic() < deadline:
            time.sleep(0.2)  # the tasks end once their top traces are handed on
        final = receiver.metrics_text()
    # flagged while in flight, each for its own reason (and the gauge empties once the tasks end)
    assert set(seen_in_flight) == set(RUNAWAY_SHAPES)
    assert runaway_gauge(final) == {}
    flagged_total = {
        (s.labels["agent"], s.labels["reason"]): s.value
        for family in text_string_to_metric_families(final)
        for s in family.samples
        if s.name == "agentmeter_runaway_tasks_flagged_total"
    }
    assert flagged_total == {
        ("research-planner", "depth"): 1,
        ("support-triage", "failed_calls"): 1,
        ("research-planner", "tool_repeats"): 1,
    }
    # one log line per flag, with the task id: exactly the runaway tasks, no ordinary one
    lines = [json.loads(line) for line in receiver.log_path.read_text().splitlines() if '"runaway task"' in line]
    logged = {(line["task_id"], line["reason"]) for line in lines}
    assert logged == {(result.runaway[shape], reason) for shape, reason in EXPECTED.items()}
    for line in lines:
        assert line["value"] > line["threshold"] and line["basis"] in ("threshold", "history")

    # after the fact: the same tasks for the same reasons
    done = subprocess.run(
        [sys.executable, "-m", "analyzer.cli", "runaway", "--data", str(data), "--history-min-tasks", HISTORY_MIN,
         "--format", "json"],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    rows = json.loads(done.stdout)
    assert {(r["task_id"], r["reason"]) for r in rows} == logged
    by_task = {r["task_id"]: r for r in rows}
    spawn = by_task[result.runaway["spawn_loop"]]
    assert (spawn["root_agent"], spawn["value"], spawn["threshold"]) == ("research-planner", 10, 6)
    storm = by_task[result.runaway["retry_storm"]]
    assert (storm["root_agent"], storm["value"]) == ("support-triage", 40)
    loop = by_task[result.runaway["tool_loop"]]
    assert (loop["root_agent"], loop["value"]) == ("research-planner", 30)


def test_history_limits() -> None:
    """The limit rule: the threshold until an agent has enough history, then history_factor x p99 of it,
    never below threshold / factor and never above the threshold."""
    rules = RunawayThresholds(llm_calls=200, history_factor=3, history_min_tasks=4)
    assert limit_for(rules, "llm_calls", [10, 10, 10]) == (200, "threshold")
    assert limit_for(rules, "llm_calls", [10, 20, 30, 40]) == (pytest.approx(3 * 39.7), "history")
    assert limit_for(rules, "llm_calls", [1, 1, 1, 1]) == (pytest.approx(200 / 3), "history")
    assert limit_for(rules, "llm_calls", [100, 100, 100, 100]) == (200, "threshold")
    assert quantile_cont([1, 2, 3, 4, 5], 0.5) == 3 and quantile_cont([0, 10], 0.99) == pytest.approx(9.9)
