-- `analyze task --calls` / the console's task page: every LLM (or embedding) call and tool call of one task
-- ($task_id; $traces: its trace ids, so the span scan reads only those traces), with the agent run (tree node)
-- it belongs to and its figures: the `charges` row of the span (analyzer/sql/charges.sql), none for a tool
-- call or for an inference span whose usage counts elsewhere (a rollup, a second copy of a call). The
-- figures are analyzer/figures.py's aggregates over the span's one row, so a call's numbers sum to its run's.
WITH calls AS (
    SELECT n.node_trace_id, n.node_span_id,
           s.trace_id AS call_trace_id, s.span_id AS call_span_id, s.name AS call_name,
           CASE WHEN n.is_tool_call THEN 'tool' ELSE coalesce(s.category, 'llm') END AS kind,
           -- as the call is shown everywhere (model_names: analyzer/pricing.py `resolved_names`)
           CASE WHEN m.model IS NOT NULL THEN m.shown_provider ELSE s.provider END AS call_provider,
           coalesce(m.shown_model, s.response_model, s.request_model) AS call_model, s.tool_name,
           strftime(timezone('UTC', s.start_time), '%Y-%m-%dT%H:%M:%S.%fZ') AS call_start,
           round((epoch_ns(s.end_time) - epoch_ns(s.start_time)) / 1e6, 3) AS latency_ms,
           coalesce(s.status_code, 'unset') AS status,
           CASE WHEN s.status_code = 'error' THEN s.status_message END AS error,
           n.llm_calls IS NOT NULL AS charged,
           n.llm_calls, n.input_tokens, n.output_tokens, n.cache_read_tokens, n.cache_write_tokens,
           n.reasoning_tokens, n.unpriced_calls, n.calls_without_usage, n.token_cost_usd, n.gpu_busy_cost_usd,
           n.total_cost_usd,
           n.reported_cost_usd
    FROM task_span_nodes AS n
    JOIN spans AS s ON s.trace_id = n.trace_id AND s.span_id = n.span_id
    LEFT JOIN model_names AS m
           ON m.provider = coalesce(s.provider, '') AND m.model = coalesce(s.response_model, s.request_model)
    WHERE n.task_id = $task_id
      AND s.trace_id IN (SELECT unnest($traces::BLOB[]))
      AND (n.is_tool_call OR s.category IN ('llm', 'embedding') OR n.llm_calls IS NOT NULL)
)
SELECT node_trace_id, node_span_id, call_trace_id, call_span_id, call_name, kind, call_provider, call_model,
       tool_name, call_start, latency_ms, status, error, charged,
       {figures}
FROM calls
GROUP BY ALL
ORDER BY call_start, call_trace_id, call_span_id;
