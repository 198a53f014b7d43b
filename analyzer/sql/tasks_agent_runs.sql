-- Stitching rules, SQL form, part 3: agent runs with their parent agent run and depth across traces.
--   * an agent run under another in the same trace: that one is its parent;
--   * a top-level agent run of a linked trace: its parent is the agent run the linked span is attributed
--     to (if that span was not written: the parent trace's top agent run);
--   * depth = parent depth + 1, 0 for agent runs without a parent agent run;
--   * name: own agent identity, the span name unless generic ('invoke_agent X' gives X), service.name
--     (the generic names are GENERIC_AGENT_SPAN_NAMES of collector_ext/stitching.py).
-- Here: each agent run with its parent agent run, numbered (node, parent_node) for analyzer/tasks.py, which
-- follows the parents to the depth of every run (pointer jumping, no recursive walk); then
-- tasks_agent_tree.sql gives agent_runs.
CREATE OR REPLACE TEMP TABLE agent_run_parents AS
WITH run_spans AS (  -- the spans agent_in_trace can hold, each once: agent spans, graph runs
    SELECT * FROM spans WHERE category = 'agent'  -- a filter the scan applies itself
    UNION ALL
    SELECT s.* FROM graph_runs AS g JOIN spans AS s ON s.trace_id = g.trace_id AND s.span_id = g.span_id
    WHERE s.category IS DISTINCT FROM 'agent'  -- graph_runs is usually empty: nothing probed
),
runs AS (
    SELECT s.trace_id, s.span_id, t.task_id, s.agent_id, s.start_time, s.end_time, s.service_name,
           s.k8s_namespace,
           coalesce(
               nullif(s.agent_name, ''),
               CASE WHEN starts_with(s.name, 'invoke_agent ') AND trim(s.name[14:]) <> ''
                    THEN trim(s.name[14:]) END,
               CASE WHEN s.name NOT IN ('agent.loop', 'invoke_agent', 'agent', 'agent.run', 'agent_run',
                                         'run_agent', 'invoke agent', 'Agent', '')
                    THEN s.name END,
               s.service_name
           ) AS agent_name,
           CASE WHEN a.above_span_id IS NOT NULL THEN a.trace_id
                WHEN coalesce(linked.agent_span_id, ptop.top_agent_span_id) IS NOT NULL THEN t.parent_trace_id
           END AS parent_agent_trace_id,
           CASE WHEN a.above_span_id IS NOT NULL THEN a.above_span_id
                ELSE coalesce(linked.agent_span_id, ptop.top_agent_span_id) END AS parent_agent_span_id
    FROM run_spans AS s
    JOIN agent_in_trace AS a ON a.trace_id = s.trace_id AND a.span_id = s.span_id
    JOIN trace_tasks AS t ON t.trace_id = s.trace_id
    LEFT JOIN span_agent AS linked
           ON a.above_span_id IS NULL AND linked.trace_id = t.parent_trace_id AND linked.span_id = t.parent_span_id
    LEFT JOIN trace_top_agent AS ptop ON a.above_span_id IS NULL AND ptop.trace_id = t.parent_trace_id
),
numbered AS (
    SELECT *, (row_number() OVER (ORDER BY trace_id, span_id) - 1)::BIGINT AS node FROM runs
)
SELECT r.*, p.node AS parent_node
FROM numbered AS r
LEFT JOIN numbered AS p ON p.trace_id = r.parent_agent_trace_id AND p.span_id = r.parent_agent_span_id;
