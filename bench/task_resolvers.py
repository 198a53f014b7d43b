"""The ways to follow trace parent links to their tops that bench_tasks.py measures side by side.

Each resolver starts from what analyzer/sql/tasks_resolve.sql leaves on the connection (trace_ids with node
numbers, trace_parent, trace_edges: the parent links already chosen) and computes every trace's top and depth,
cycles cut at their smallest trace. Each returns (tasks, deepest depth, traces in cycles) so the bench can
check that they agree:

  cte             the recursive CTEs the analyzer used before (tasks_resolve.sql at 31fa257): a walk up from
                  every trace that may be in a cycle, then a walk down from the tops, one step per level
  sql_jumping     pointer jumping in DuckDB SQL: one self-join of the node table per doubling of the distance
  python_walk     a memoized walk up in plain Python (the receiver's in-memory `resolve_tasks`, over ints)
  numpy_jumping   analyzer.forest (what the analyzer uses): pointer jumping over NumPy arrays
"""

from __future__ import annotations

from collections.abc import Callable

import duckdb
import numpy as np

from analyzer.forest import resolve_forest

Answer = tuple[int, int, int]  # (tasks, deepest depth, traces in cycles)

CTE_SQL = """
CREATE OR REPLACE TEMP TABLE bench_cycles AS
WITH RECURSIVE edges AS (
    SELECT trace_id, parent_trace_id FROM trace_parent WHERE parent_trace_id IS NOT NULL
),
walk(start_id, next_id, path) AS (
    SELECT trace_id, parent_trace_id, [trace_id]
    FROM edges
    WHERE trace_id IN (SELECT parent_trace_id FROM edges)
    UNION ALL
    SELECT w.start_id, e.parent_trace_id, list_append(w.path, w.next_id)
    FROM walk AS w
    JOIN edges AS e ON e.trace_id = w.next_id
    WHERE w.next_id <> w.start_id AND NOT list_contains(w.path, w.next_id) AND len(w.path) < 10000
)
SELECT start_id AS trace_id, list_min(path) AS cycle_top
FROM walk
WHERE next_id = start_id;

CREATE OR REPLACE TEMP TABLE bench_tasks AS
WITH RECURSIVE cut_edges AS (
    SELECT p.trace_id, p.parent_trace_id
    FROM trace_parent AS p
    LEFT JOIN bench_cycles AS c ON c.trace_id = p.trace_id
    WHERE p.parent_trace_id IS NOT NULL AND (c.cycle_top IS NULL OR c.cycle_top <> p.trace_id)
),
descend(trace_id, task_id, depth) AS (
    SELECT trace_id, trace_id, 0 FROM trace_ids WHERE trace_id NOT IN (SELECT trace_id FROM cut_edges)
    UNION ALL
    SELECT e.trace_id, d.task_id, d.depth + 1
    FROM descend AS d
    JOIN cut_edges AS e ON e.parent_trace_id = d.trace_id
    WHERE d.depth < 10000
)
SELECT * FROM descend;
"""


def cte(con: duckdb.DuckDBPyConnection) -> Answer:
    con.execute(CTE_SQL)
    tasks, deepest = con.execute("SELECT count(DISTINCT task_id), max(depth) FROM bench_tasks").fetchone()
    cycles = con.execute("SELECT count(*) FROM bench_cycles").fetchone()[0]
    return tasks, deepest or 0, cycles


def sql_jumping(con: duckdb.DuckDBPyConnection) -> Answer:
    """The same algorithm as analyzer.forest, each vectorized step a DuckDB statement."""
    count = con.execute("SELECT count(*) FROM trace_ids").fetchone()[0]
    rounds = max(1, (count - 1).bit_length()) + 1
    con.execute(
        """CREATE OR REPLACE TEMP TABLE bench_parent AS
           SELECT t.node, e.parent_node FROM trace_ids AS t LEFT JOIN trace_edges AS e USING (node)"""
    )
    # 1. walks that never reach a root: jump until every walk stands still, or 2**rounds >= count
    con.execute(
        """CREATE OR REPLACE TEMP TABLE bench_jump AS
           SELECT node, coalesce(parent_node, node) AS ahead, node AS low FROM bench_parent"""
    )
    for _ in range(rounds):
        con.execute(
            """CREATE OR REPLACE TEMP TABLE bench_next AS
               SELECT j.node, a.ahead, least(j.low, a.low) AS low
               FROM bench_jump AS j JOIN bench_jump AS a ON a.node = j.ahead"""
        )
        moved = con.execute(
            "SELECT count(*) FROM bench_next AS n JOIN bench_jump AS j USING (node) WHERE n.ahead <> j.ahead"
        ).fetchone()[0]
        con.execute("CREATE OR REPLACE TEMP TABLE bench_jump AS SELECT * FROM bench_next")
        if not moved:
            break
    con.execute(
        """CREATE OR REPLACE TEMP TABLE bench_unsettled AS
           SELECT j.node FROM bench_jump AS j JOIN bench_parent AS p ON p.node = j.ahead
           WHERE p.parent_node IS NOT NULL"""
    )
    cycles = 0
    if con.execute("SELECT count(*) FROM bench_unsettled").fetchone()[0]:
        # members: where the long jumps land; the smallest member of each cycle: a running minimum
        con.execute(
            """CREATE OR REPLACE TEMP TABLE bench_jump AS
               SELECT p.node, p.parent_node AS ahead, p.node AS low
               FROM bench_parent AS p SEMI JOIN bench_unsettled AS u ON u.node = p.node"""
        )
        for _ in range(rounds):
            con.execute(
                """CREATE OR REPLACE TEMP TABLE bench_jump AS
                   SELECT j.node, a.ahead, least(j.low, a.low) AS low
                   FROM bench_jump AS j JOIN bench_jump AS a ON a.node = j.ahead"""
            )
        con.execute(
            """CREATE OR REPLACE TEMP TABLE bench_members AS
               SELECT DISTINCT j.ahead AS node, m.low AS top
               FROM bench_jump AS j JOIN bench_jump AS m ON m.node = j.ahead"""
        )
        cycles = con.execute("SELECT count(*) FROM bench_members").fetchone()[0]
        con.execute(
            """UPDATE bench_parent SET parent_node = NULL
               WHERE node IN (SELECT DISTINCT top FROM bench_members)"""
        )
    # 2. roots and depths over the forest
    con.execute(
        """CREATE OR REPLACE TEMP TABLE bench_jump AS
           SELECT node, coalesce(parent_node, node) AS ahead, (parent_node IS NOT NULL)::BIGINT AS depth
           FROM bench_parent"""
    )
    for _ in range(rounds + 1):
        con.execute(
            """CREATE OR REPLACE TEMP TABLE bench_next AS
               SELECT j.node, a.ahead, j.depth + a.depth AS depth
               FROM bench_jump AS j JOIN bench_jump AS a ON a.node = j.ahead"""
        )
        moved = con.execute(
            "SELECT count(*) FROM bench_next AS n JOIN bench_jump AS j USING (node) WHERE n.ahead <> j.ahead"
        ).fetchone()[0]
        con.execute("CREATE OR REPLACE TEMP TABLE bench_jump AS SELECT * FROM bench_next")
        if not moved:
            break
    tasks, deepest = con.execute("SELECT count(DISTINCT ahead), max(depth) FROM bench_jump").fetchone()
    return tasks, deepest, cycles


def _parent_array(con: duckdb.DuckDBPyConnection) -> np.ndarray:
    count = con.execute("SELECT count(*) FROM trace_ids").fetchone()[0]
    edges = con.execute("SELECT node, parent_node FROM trace_edges").fetchnumpy()
    parent = np.full(count, -1, dtype=np.int64)
    parent[edges["node"]] = edges["parent_node"]
    return parent


def python_walk(con: duckdb.DuckDBPyConnection) -> Answer:
    """Walk up from each node until a resolved node; a walk that meets itself found a cycle."""
    parent = _parent_array(con).tolist()
    count = len(parent)
    top = [-1] * count
    depth = [0] * count
    in_cycle = [False] * count
    for start in range(count):
        if top[start] >= 0:
            continue
        path: list[int] = []
        position: dict[int, int] = {}
        node = start
        while node >= 0 and top[node] < 0 and node not in position:
            position[node] = len(path)
            path.append(node)
            node = parent[node]
        if node >= 0 and node in position:  # a cycle: its smallest member becomes a top
            members = path[position[node] :]
            for member in members:
                in_cycle[member] = True
            cut = min(members)
            top[cut], depth[cut] = cut, 0
            # the cycle below the cut, in walk order from the cut's child back round to it
            ring = members[members.index(cut) + 1 :] + members[: members.index(cut)]
            for member in reversed(ring):
                up = parent[member]
                top[member], depth[member] = cut, depth[up] + 1
            path = path[: position[node]]
        elif node < 0:
            node = path.pop()
            top[node], depth[node] = node, 0
        for member in reversed(path):
            up = parent[member]
            top[member], depth[member] = top[up], depth[up] + 1
    return len(set(top)), max(depth, default=0), sum(in_cycle)


def numpy_jumping(con: duckdb.DuckDBPyConnection) -> Answer:
    forest = resolve_forest(_parent_array(con))
    return len(np.unique(forest.root)), int(forest.depth.max(initial=0)), int(forest.in_cycle.sum())


RESOLVERS: dict[str, Callable[[duckdb.DuckDBPyConnection], Answer]] = {
    "cte": cte,
    "sql_jumping": sql_jumping,
    "python_walk": python_walk,
    "numpy_jumping": numpy_jumping,
}
