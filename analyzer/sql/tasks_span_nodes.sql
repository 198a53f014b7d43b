-- Per span of every task: the agent run (tree node) it belongs to, and its charges (analyzer/sql/charges.sql:
-- the rows every figure sums; NULL figures for spans that are no call and no GPU charge).
-- A span belongs to the agent run it is attributed to (span_agent); a span of a trace without any agent
-- run belongs to the agent run its trace's parent link points into (NULL: the task's root node).
-- Needs trace_tasks/span_agent (analyzer.tasks) and charges (analyzer.analysis.install_charges).
CREATE OR REPLACE TEMP TABLE task_span_nodes AS
SELECT t.task_id, s.trace_id, s.span_id, s.start_time, s.end_time, s.stitch_state,  -- only what the queries read
       CASE WHEN a.agent_span_id IS NOT NULL THEN s.trace_id ELSE t.parent_trace_id END AS node_trace_id,
       coalesce(a.agent_span_id, linked.agent_span_id, ptop.top_agent_span_id) AS node_span_id,
       s.category = 'tool' AS is_tool_call,
       -- the task failed when its top trace's root span ended in error
       s.trace_id = t.task_id AND s.parent_span_id IS NULL AND s.status_code = 'error' AS failed_root,
       c.llm_calls, c.input_tokens, c.output_tokens, c.cache_read_tokens, c.cache_write_tokens,
       c.reasoning_tokens, c.unpriced_calls, c.calls_without_usage, c.token_cost_usd, c.gpu_busy_cost_usd, c.total_cost_usd,
       c.reported_cost_usd
FROM spans AS s
JOIN trace_tasks AS t ON t.trace_id = s.trace_id
LEFT JOIN span_agent AS a ON a.trace_id = s.trace_id AND a.span_id = s.span_id
LEFT JOIN span_agent AS linked
       ON a.agent_span_id IS NULL AND linked.trace_id = t.parent_trace_id AND linked.span_id = t.parent_span_id
LEFT JOIN trace_top_agent AS ptop ON a.agent_span_id IS NULL AND ptop.trace_id = t.parent_trace_id
LEFT JOIN charges AS c ON c.trace_id = s.trace_id AND c.span_id = s.span_id;
