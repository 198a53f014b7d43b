"""Task resolution over the whole dataset (authoritative): agent runs and linked traces -> tasks.

The rules are collector_ext/traces/stitching.py's (its docstring states them and the answers for the odd
cases), written in SQL in analyzer/sql/tasks_*.sql. The receiver's task_id, agent_depth and
parent_agent_name are hints only: this module follows the link edges across every file of every writer, so
a sub-agent written an hour before its parent, or by another receiver, lands in the right task.

Following parents to the top is never a recursive walk (one step per level of depth, each over every edge:
super-linear in depth): SQL numbers the nodes and chooses each one's parent, analyzer.forest follows them
by pointer jumping (O(n log depth); cycles found and cut), and SQL joins the answer back.

`install_task_views(con)` creates, once per connection (temporary tables, so each is computed once):
  trace_tasks(trace_id, task_id, parent_trace_id, parent_span_id, depth, stitch_state)
  agent_runs(trace_id, span_id, task_id, agent_name, agent_id, parent_agent_trace_id, parent_agent_span_id,
             parent_agent_name, depth, start_time, end_time, service_name, k8s_namespace)
  span_agent(trace_id, span_id, agent_span_id): the agent run (same trace) each span is attributed to
plus their building blocks (span_tree, span_enclosing_agent, agent_in_trace, trace_top_agent,
trace_link_targets, trace_ids, trace_parent, trace_edges, trace_shared_calls).
"""

from __future__ import annotations

import duckdb
import numpy as np
import pyarrow as pa

from analyzer.dataset import load_sql
from analyzer.forest import Forest, components, resolve_forest

# Tables only building trace_tasks, agent_runs and task_span_nodes reads (one row per span, most of them): a
# process that keeps the built tables (analyzer/snapshot.py) drops these.
BUILDING_TABLES = (
    "span_tree",
    "agent_wrappers",
    "span_enclosing_agent",
    "agent_in_trace",
    "span_agent",
    "trace_link_targets",
    "trace_edges",
    "trace_shared_calls",
)


def install_task_views(con: duckdb.DuckDBPyConnection) -> None:
    """trace_tasks, agent_runs and span_agent (and their building blocks), once per connection."""
    if _exists(con, "agent_runs"):
        return
    install_trace_tasks(con)
    con.execute(load_sql("tasks_agent_runs.sql"))
    _with_table(con, "agent_run_forest", resolve_agent_run_forest(con), "tasks_agent_tree.sql")


def install_trace_tasks(con: duckdb.DuckDBPyConnection) -> None:
    """The task of every trace (trace_tasks) and the attribution tables it needs; no agent_runs."""
    con.execute(load_sql("tasks_attribution.sql"))
    con.execute(load_sql("tasks_resolve.sql"))
    _with_table(con, "trace_forest", resolve_trace_forest(con), "tasks_trace_tasks.sql")


def resolve_trace_forest(con: duckdb.DuckDBPyConnection) -> pa.Table:
    """Every trace's task: the top its parent links lead to, then tasks sharing calls merged.

    Reads trace_ids (node numbers in trace_id order), trace_edges and trace_shared_calls; returns
    trace_forest(node, task_node, depth, in_cycle, cut, shared) in node order.
    """
    count = _count(con, "trace_ids")
    forest = _forest(con, "SELECT node, parent_node FROM trace_edges", count)
    shared_pairs = con.execute("SELECT node, other_node FROM trace_shared_calls").fetchnumpy()
    # Tasks (roots) joined by a shared call are one: the smallest root, i.e. the smallest task_id, names it.
    merged = components(count, forest.root[shared_pairs["node"]], forest.root[shared_pairs["other_node"]])
    task = merged[forest.root]
    nodes = np.arange(count, dtype=np.int64)
    shared = (forest.root == nodes) & (task != nodes)  # the top of a task merged into another
    return pa.table(
        {
            "node": nodes,
            "task_node": task,
            "depth": forest.depth,
            "in_cycle": forest.in_cycle,
            "cut": forest.cut,
            "shared": shared,
        }
    )


def resolve_agent_run_forest(con: duckdb.DuckDBPyConnection) -> pa.Table:
    """The depth of every agent run under its parent agent runs: agent_run_forest(node, depth, cut)."""
    count = _count(con, "agent_run_parents")
    forest = _forest(con, "SELECT node, parent_node FROM agent_run_parents WHERE parent_node IS NOT NULL", count)
    return pa.table({"node": np.arange(count, dtype=np.int64), "depth": forest.depth, "cut": forest.cut})


def _count(con: duckdb.DuckDBPyConnection, table: str) -> int:
    row = con.execute(f"SELECT count(*) FROM {table}").fetchone()  # noqa: S608 (a fixed table name)
    assert row is not None  # count(*) always answers one row
    return int(row[0])


def _forest(con: duckdb.DuckDBPyConnection, edges_sql: str, count: int) -> Forest:
    edges = con.execute(edges_sql).fetchnumpy()
    parent = np.full(count, -1, dtype=np.int64)
    parent[edges["node"]] = edges["parent_node"]
    return resolve_forest(parent)


def _with_table(con: duckdb.DuckDBPyConnection, name: str, table: pa.Table, sql_file: str) -> None:
    """Run `sql_file` with `table` visible as `name` (an Arrow table, only for that statement)."""
    con.register(name, table)
    try:
        con.execute(load_sql(sql_file))
    finally:
        con.unregister(name)


def has_span_costs(con: duckdb.DuckDBPyConnection) -> bool:
    return _exists(con, "span_costs")


def _exists(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    found = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE table_name = $name AND temporary "
        "UNION ALL SELECT count(*) FROM duckdb_views() WHERE view_name = $name",
        {"name": name},
    ).fetchall()
    return any(row[0] for row in found)
