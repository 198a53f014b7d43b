-- Per span of every task: the agent run (tree node) its usage belongs to, and its counted usage and cost.
-- A span belongs to the agent run it is attributed to (span_agent); a span of a trace without any agent
-- run belongs to the agent run its trace's parent link points into (NULL: the task's root node).
-- Needs trace_tasks/span_agent (analyzer.tasks) and span_costs (analyzer.pricing): span_costs holds one row
-- per span whose usage counts (counted_spans.counted), so its rows are the counted spans (read once).
CREATE OR REPLACE TEMP TABLE task_span_nodes AS
SELECT t.task_id, s.start_time, s.end_time, s.stitch_state,  -- only what the listing and the tree read
       CASE WHEN a.agent_span_id IS NOT NULL THEN s.trace_id ELSE t.parent_trace_id END AS node_trace_id,
       coalesce(a.agent_span_id, linked.agent_span_id, ptop.top_agent_span_id) AS node_span_id,
       s.category IN ('llm', 'embedding')
           AND (c.span_id IS NOT NULL OR coalesce(s.input_tokens, 0) + coalesce(s.output_tokens, 0)
                + coalesce(s.cache_read_tokens, 0) + coalesce(s.cache_write_tokens, 0)
                + coalesce(s.reasoning_tokens, 0) = 0) AS is_llm_call,
       s.category = 'tool' AS is_tool_call,
       CASE WHEN c.span_id IS NOT NULL THEN coalesce(s.input_tokens, 0) ELSE 0 END AS input_tokens,
       CASE WHEN c.span_id IS NOT NULL THEN coalesce(s.output_tokens, 0) ELSE 0 END AS output_tokens,
       CASE WHEN c.span_id IS NOT NULL THEN coalesce(s.cache_read_tokens, 0) ELSE 0 END AS cache_read_tokens,
       CASE WHEN c.span_id IS NOT NULL THEN coalesce(s.cache_write_tokens, 0) ELSE 0 END AS cache_write_tokens,
       CASE WHEN c.span_id IS NOT NULL THEN coalesce(s.reasoning_tokens, 0) ELSE 0 END AS reasoning_tokens,
       c.cost_usd,
       c.span_id IS NOT NULL AND NOT c.priced AS unpriced
FROM spans AS s
JOIN trace_tasks AS t ON t.trace_id = s.trace_id
LEFT JOIN span_agent AS a ON a.trace_id = s.trace_id AND a.span_id = s.span_id
LEFT JOIN span_agent AS linked
       ON a.agent_span_id IS NULL AND linked.trace_id = t.parent_trace_id AND linked.span_id = t.parent_span_id
LEFT JOIN trace_top_agent AS ptop ON a.agent_span_id IS NULL AND ptop.trace_id = t.parent_trace_id
LEFT JOIN span_costs AS c ON c.trace_id = s.trace_id AND c.span_id = s.span_id;
