-- Stitching rules, SQL form, part 2: tasks over the whole dataset (authoritative), from the link edges.
-- The same rules as collector_ext/stitching.py (its docstring states them; a test holds both equal):
--   * a trace's parent links are the links on its roots (spans whose parent is not in the trace); if no
--     root carries a link, the links on its top-level agent runs;
--   * self-links are ignored; a trace whose only links are self-links is a top, state 'self_link';
--   * a target exists when its trace is in the dataset; none exists: the trace is a top, 'missing_parent';
--   * the parent is the smallest (trace_id, span_id) among existing targets; 'multi_parent' when the
--     existing targets lie in more than one trace;
--   * cycle: the smallest trace_id of the cycle is the top (its parent link is cut), every member is
--     marked 'cycle'; traces hanging off a cycle join its task;
--   * task_id = the top's trace_id; depth = links followed from the top. Every walk is bounded.

CREATE OR REPLACE TEMP TABLE trace_link_targets AS
WITH roots AS (
    SELECT s.trace_id, s.links
    FROM spans AS s
    JOIN span_tree AS t ON t.trace_id = s.trace_id AND t.span_id = s.span_id
    WHERE t.parent_span_id IS NULL AND len(s.links) > 0
),
top_level_agents AS (
    SELECT s.trace_id, s.links
    FROM spans AS s
    JOIN agent_in_trace AS a ON a.trace_id = s.trace_id AND a.span_id = s.span_id
    WHERE a.above_span_id IS NULL AND len(s.links) > 0
      AND s.trace_id NOT IN (SELECT trace_id FROM roots)
),
carriers AS (
    SELECT trace_id, unnest(links) AS link FROM roots
    UNION ALL
    SELECT trace_id, unnest(links) AS link FROM top_level_agents
)
SELECT DISTINCT trace_id, link.trace_id AS target_trace_id, link.span_id AS target_span_id
FROM carriers;

-- Every trace, with the service it came from (names a task whose top trace has no agent run).
CREATE OR REPLACE TEMP TABLE trace_ids AS
SELECT trace_id, min(service_name) AS service_name FROM spans GROUP BY trace_id;

CREATE OR REPLACE TEMP TABLE trace_parent AS
WITH marked AS (
    SELECT l.*,
           l.target_trace_id <> l.trace_id AS is_other,
           l.target_trace_id <> l.trace_id AND e.trace_id IS NOT NULL AS target_exists
    FROM trace_link_targets AS l
    LEFT JOIN trace_ids AS e ON e.trace_id = l.target_trace_id
),
ranked AS (
    SELECT *,
           row_number() OVER (
               PARTITION BY trace_id ORDER BY target_exists DESC, target_trace_id, target_span_id
           ) AS nth,
           count(*) FILTER (WHERE is_other) OVER (PARTITION BY trace_id) AS others,
           count(DISTINCT CASE WHEN target_exists THEN target_trace_id END) OVER (PARTITION BY trace_id)
               AS parent_traces
    FROM marked
)
SELECT trace_id,
       CASE WHEN target_exists THEN target_trace_id END AS parent_trace_id,
       CASE WHEN target_exists THEN target_span_id END AS parent_span_id,
       CASE WHEN others = 0 THEN 'self_link'
            WHEN NOT target_exists THEN 'missing_parent'
            WHEN parent_traces > 1 THEN 'multi_parent'
            ELSE 'ok' END AS link_state
FROM ranked
WHERE nth = 1;

-- Cycle members: traces whose walk up the parent edges comes back to themselves. Only traces that are
-- both a child and a parent can be in a cycle; a walk stops on revisiting a trace (bounded too).
CREATE OR REPLACE TEMP TABLE trace_cycles AS
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

CREATE OR REPLACE TEMP TABLE trace_tasks AS
WITH RECURSIVE cut_edges AS (
    SELECT p.trace_id, p.parent_trace_id
    FROM trace_parent AS p
    LEFT JOIN trace_cycles AS c ON c.trace_id = p.trace_id
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
SELECT d.trace_id, d.task_id,
       CASE WHEN d.depth > 0 THEN p.parent_trace_id END AS parent_trace_id,
       CASE WHEN d.depth > 0 THEN p.parent_span_id END AS parent_span_id,
       d.depth,
       CASE WHEN c.trace_id IS NOT NULL THEN 'cycle' ELSE coalesce(p.link_state, 'ok') END AS stitch_state
FROM descend AS d
LEFT JOIN trace_parent AS p ON p.trace_id = d.trace_id
LEFT JOIN trace_cycles AS c ON c.trace_id = d.trace_id;
