-- Stitching rules, SQL form, part 3: agent runs with their parent agent run and depth across traces.
--   * an agent run under another in the same trace: that one is its parent;
--   * a top-level agent run of a linked trace: its parent is the agent run the linked span is attributed
--     to (if that span was not written: the parent trace's top agent run);
--   * depth = parent depth + 1, 0 for agent runs without a parent agent run.
CREATE OR REPLACE TEMP TABLE agent_runs AS
WITH RECURSIVE named AS MATERIALIZED (
    SELECT s.trace_id, s.span_id, s.agent_id, s.start_time, s.end_time, s.service_name, s.k8s_namespace,
           coalesce(
               nullif(s.agent_name, ''),
               CASE WHEN starts_with(s.name, 'invoke_agent ') AND trim(s.name[14:]) <> ''
                    THEN trim(s.name[14:]) END,
               CASE WHEN s.name NOT IN ('agent.loop', 'invoke_agent', 'agent', 'agent.run', 'agent_run',
                                         'run_agent', 'invoke agent', 'Agent', '')
                    THEN s.name END,
               s.service_name
           ) AS agent_name
    FROM spans AS s
    WHERE s.category = 'agent'
),
parents AS (
    SELECT a.trace_id, a.span_id,
           CASE WHEN a.above_span_id IS NOT NULL THEN a.trace_id ELSE t.parent_trace_id END
               AS parent_agent_trace_id,
           CASE WHEN a.above_span_id IS NOT NULL THEN a.above_span_id
                ELSE coalesce(linked.agent_span_id, ptop.top_agent_span_id) END AS parent_agent_span_id
    FROM agent_in_trace AS a
    JOIN trace_tasks AS t ON t.trace_id = a.trace_id
    LEFT JOIN span_agent AS linked
           ON linked.trace_id = t.parent_trace_id AND linked.span_id = t.parent_span_id
    LEFT JOIN trace_top_agent AS ptop ON ptop.trace_id = t.parent_trace_id
),
runs AS (
    SELECT DISTINCT p.trace_id, p.span_id,
           CASE WHEN p.parent_agent_span_id IS NOT NULL THEN p.parent_agent_trace_id END AS parent_agent_trace_id,
           p.parent_agent_span_id
    FROM parents AS p
),
descend(trace_id, span_id, depth) AS (
    SELECT trace_id, span_id, 0 FROM runs WHERE parent_agent_span_id IS NULL
    UNION ALL
    SELECT r.trace_id, r.span_id, d.depth + 1
    FROM descend AS d
    JOIN runs AS r ON r.parent_agent_trace_id = d.trace_id AND r.parent_agent_span_id = d.span_id
    WHERE d.depth < 10000
)
SELECT n.trace_id, n.span_id, t.task_id, n.agent_name, n.agent_id,
       r.parent_agent_trace_id, r.parent_agent_span_id, pn.agent_name AS parent_agent_name,
       d.depth, n.start_time, n.end_time, n.service_name, n.k8s_namespace
FROM named AS n
JOIN runs AS r USING (trace_id, span_id)
JOIN descend AS d USING (trace_id, span_id)
JOIN trace_tasks AS t ON t.trace_id = n.trace_id
LEFT JOIN named AS pn ON pn.trace_id = r.parent_agent_trace_id AND pn.span_id = r.parent_agent_span_id;
