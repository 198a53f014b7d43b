"""Runaway tasks after the fact (`analyze runaway`): the tasks whose sub-agent fan-out, depth, repetitions of
one tool call, LLM calls, failed calls or token cost passed a limit.

The rules are the receiver's, which flags the same tasks while they run (collector_ext/traces/runaway.py:
the measures, `RunawayThresholds`, and `limit_from`: a threshold, or the root agent's own history, the p99
of its previous HISTORY_TASKS tasks, once it has `history_min_tasks` of them). Here the measures come from
the whole dataset (`sql/runaway_tasks.sql`): tasks as the analyzer resolves them, calls and cost as the
figures count them, the history ordered by the tasks' end. One row per task and reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from analyzer.analysis import Analysis
from analyzer.dataset import load_sql
from analyzer.timeparse import TimeRange
from collector_ext.traces.runaway import HISTORY_TASKS, REASONS, RunawayThresholds, limit_from

COLUMNS = ["task_id", "root_agent", "reason", "value", "threshold", "basis", "task_start"]


@dataclass(frozen=True)
class RunawayRow:
    task_id: str  # hex
    root_agent: str
    reason: str
    value: float
    threshold: float
    basis: str  # threshold | history
    task_start: datetime

    def row(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in COLUMNS}


def runaway_tasks(
    analysis: Analysis, thresholds: RunawayThresholds | None = None, window: TimeRange | None = None
) -> list[RunawayRow]:
    """Every task (started in `window`) past a limit, once per reason, in order of start."""
    thresholds = thresholds or RunawayThresholds()
    window = window or TimeRange()
    analysis.install_tasks()
    floors = {f"floor_{r}": thresholds.threshold(r) / thresholds.history_factor for r in REASONS}
    sql = load_sql("runaway_tasks.sql").replace("{history}", str(int(HISTORY_TASKS)))
    cursor = analysis.con.execute(sql, floors)
    names = [d[0] for d in cursor.description]
    found: list[RunawayRow] = []
    for values in cursor.fetchall():
        task = dict(zip(names, values, strict=True))
        start = task["task_start"]
        if (window.since is not None and start < window.since) or (window.until is not None and start >= window.until):
            continue
        for reason in REASONS:
            limit, basis = limit_from(thresholds, reason, task[f"p99_{reason}"], task["past_tasks"])
            if task[reason] > limit:
                found.append(
                    RunawayRow(
                        task["task_id"].hex(),
                        task["root_agent"],
                        reason,
                        task[reason],
                        limit,
                        basis,
                        task["task_start"],
                    )  # fmt: skip
                )
    return found
