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
--   * task_id = the top's trace_id; depth = links followed from the top;
--   * shared calls: tasks whose traces hold copies of one inference call (the same response_id at the same
--     moment: two instrumentations of one run) are one task, the one with the smallest task_id; the top
--     traces of the others keep their depth 0 and are marked 'shared_calls'.
-- This file chooses each trace's parent link and finds the shared calls; following the links to the tops is
-- analyzer/tasks.py's (pointer jumping, O(n log depth): no recursive walk), then tasks_trace_tasks.sql.

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

-- Every trace, numbered in trace_id order (the forest's nodes), with the service it came from (names a task
-- whose top trace has no agent run).
CREATE OR REPLACE TEMP TABLE trace_ids AS
SELECT trace_id, service_name, (row_number() OVER (ORDER BY trace_id) - 1)::BIGINT AS node
FROM (SELECT trace_id, min(service_name) AS service_name FROM spans GROUP BY trace_id);

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

-- The forest's edges: child node -> parent node (traces with a parent link that exists).
CREATE OR REPLACE TEMP TABLE trace_edges AS
SELECT c.node, p.node AS parent_node
FROM trace_parent AS tp
JOIN trace_ids AS c ON c.trace_id = tp.trace_id
JOIN trace_ids AS p ON p.trace_id = tp.parent_trace_id;

-- Shared calls: pairs of traces holding copies of one inference call: the same response_id, at the same
-- moment (the copies' times overlap: two instrumentations wrap the same request; a response id seen again
-- later, e.g. from a cache that answers with the stored response, is another call). Most response ids occur
-- once: a narrow pass over 64-bit hashes (sorted, neighbours compared) finds the few repeated ones, and the
-- exact pass reads only those.
CREATE OR REPLACE TEMP TABLE trace_shared_calls AS
WITH calls AS (
    SELECT trace_id, response_id, start_time, end_time
    FROM spans
    WHERE category IN ('llm', 'embedding') AND response_id IS NOT NULL AND response_id <> ''
),
repeated AS (
    SELECT DISTINCT response_hash
    FROM (
        SELECT response_hash, lag(response_hash) OVER (ORDER BY response_hash) AS previous_hash
        FROM (SELECT hash(response_id) AS response_hash FROM calls)
    )
    WHERE response_hash = previous_hash
),
copies AS MATERIALIZED (
    SELECT * FROM calls WHERE hash(response_id) IN (SELECT response_hash FROM repeated)
)
SELECT DISTINCT a_ids.node, b_ids.node AS other_node
FROM copies AS a
JOIN copies AS b
  ON b.response_id = a.response_id AND b.trace_id > a.trace_id
 AND a.start_time <= b.end_time AND b.start_time <= a.end_time
JOIN trace_ids AS a_ids ON a_ids.trace_id = a.trace_id
JOIN trace_ids AS b_ids ON b_ids.trace_id = b.trace_id;
