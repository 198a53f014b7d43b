"""Task resolution over the whole dataset (authoritative): agent runs and linked traces -> tasks.

The rules are collector_ext/stitching.py's (its docstring states them and the answers for the odd cases),
written in SQL in analyzer/sql/tasks_*.sql. The receiver's task_id, agent_depth and parent_agent_name are
hints only: this module follows the link edges across every file of every writer, so a sub-agent written
an hour before its parent, or by another receiver, lands in the right task.

`install_task_views(con)` creates, once per connection (temporary tables, so each is computed once):
  trace_tasks(trace_id, task_id, parent_trace_id, parent_span_id, depth, stitch_state)
  agent_runs(trace_id, span_id, task_id, agent_name, agent_id, parent_agent_trace_id, parent_agent_span_id,
             parent_agent_name, depth, start_time, end_time, service_name, k8s_namespace)
  span_agent(trace_id, span_id, agent_span_id): the agent run (same trace) each span is attributed to
plus their building blocks (span_tree, span_enclosing_agent, agent_in_trace, trace_top_agent,
trace_link_targets, trace_parent, trace_cycles).
"""

from __future__ import annotations

import duckdb

from analyzer.dataset import load_sql

TASK_SQL_FILES = ("tasks_attribution.sql", "tasks_resolve.sql", "tasks_agent_runs.sql")


def install_task_views(con: duckdb.DuckDBPyConnection) -> None:
    if _exists(con, "agent_runs"):
        return
    for name in TASK_SQL_FILES:
        con.execute(load_sql(name))


def has_span_costs(con: duckdb.DuckDBPyConnection) -> bool:
    return _exists(con, "span_costs")


def _exists(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    found = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE table_name = $name AND temporary "
        "UNION ALL SELECT count(*) FROM duckdb_views() WHERE view_name = $name",
        {"name": name},
    ).fetchall()
    return any(row[0] for row in found)
