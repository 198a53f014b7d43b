-- `analyze task`: direct totals per tree node (agent run) of one task ($task_id); NULL node: the root.
SELECT node_trace_id, node_span_id,
       count(*) FILTER (WHERE is_llm_call) AS llm_calls,
       count(*) FILTER (WHERE is_tool_call) AS tool_calls,
       sum(input_tokens) AS input_tokens,
       sum(output_tokens) AS output_tokens,
       sum(cache_read_tokens) AS cache_read_tokens,
       sum(cache_write_tokens) AS cache_write_tokens,
       sum(reasoning_tokens) AS reasoning_tokens,
       sum(cost_usd)::DOUBLE AS cost_usd,
       count(*) FILTER (WHERE unpriced) AS unpriced_calls
FROM task_span_nodes
WHERE task_id = $task_id
GROUP BY node_trace_id, node_span_id;
