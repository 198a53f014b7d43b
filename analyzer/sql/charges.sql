-- charges: the rows every figure is computed from (analyzer/figures.py defines the figures over them).
-- One row per span that is a call or carries a charge:
--   * every counted call (span_costs: usage counted exactly once, priced by tokens where its model has a price);
--   * every inference span that reported no usage at all (a call whose tokens and cost are unknown);
--   * every other inference span charged GPU time (e.g. a second copy of a call, sharing the busy time).
-- The charging rule: a call with a token price is charged its tokens only; a call without one is charged
-- its share of GPU busy time (span_gpu_costs), else it is unpriced (when it reported usage). Grouping
-- columns ride along (read only by the queries that group on them): `provider` and `model` as the call is
-- shown (model_names, analyzer/pricing.py `resolved_names`: who serves it, the model as that provider names
-- it), `span_provider` and `span_model` as the span named them.
CREATE OR REPLACE TEMP VIEW charges AS
WITH calls AS (
    SELECT c.trace_id, c.span_id, c.start_time, c.task_id, c.agent_name, c.service_name, c.k8s_namespace,
           c.conversation_id, c.provider, c.model, c.attributes, c.resource_attributes,
           c.input_tokens, c.output_tokens, c.cache_read_tokens, c.cache_write_tokens, c.reasoning_tokens,
           c.cost_usd, c.priced, true AS reported_usage, c.reported_cost_usd
    FROM span_costs AS c
    UNION ALL
    SELECT s.trace_id, s.span_id, s.start_time, s.task_id, s.agent_name, s.service_name, s.k8s_namespace,
           s.conversation_id, s.provider, coalesce(s.response_model, s.request_model), s.attributes,
           s.resource_attributes,
           0, 0, 0, 0, 0,
           NULL, false, false, s.reported_cost_usd
    FROM spans AS s
    WHERE s.category IN ('llm', 'embedding')
      AND coalesce(s.input_tokens, 0) = 0 AND coalesce(s.output_tokens, 0) = 0
      AND coalesce(s.cache_read_tokens, 0) = 0 AND coalesce(s.cache_write_tokens, 0) = 0
      AND coalesce(s.reasoning_tokens, 0) = 0
)
SELECT c.trace_id, c.span_id, c.start_time, c.task_id AS task_hint, c.agent_name, c.service_name,
       c.k8s_namespace, c.conversation_id,
       CASE WHEN n.model IS NOT NULL THEN n.shown_provider ELSE c.provider END AS provider,
       coalesce(n.shown_model, c.model) AS model, c.provider AS span_provider, c.model AS span_model,
       c.attributes, c.resource_attributes,
       1 AS llm_calls,
       c.input_tokens, c.output_tokens, c.cache_read_tokens, c.cache_write_tokens, c.reasoning_tokens,
       CASE WHEN c.priced OR g.span_id IS NOT NULL OR NOT c.reported_usage THEN 0 ELSE 1 END AS unpriced_calls,
       c.cost_usd AS token_cost_usd,
       CASE WHEN NOT c.priced THEN g.gpu_cost_usd END AS gpu_busy_cost_usd,
       CASE WHEN c.priced THEN c.cost_usd ELSE g.gpu_cost_usd END AS total_cost_usd,
       -- a DECIMAL: sums of it are the same in any order (a DOUBLE sum changes with DuckDB's threads)
       c.reported_cost_usd::DECIMAL(38, 12) AS reported_cost_usd,
       c.reported_usage AS usage_reported,  -- false: a call that reported no usage (tokens and cost unknown)
       CASE WHEN c.reported_usage THEN 0 ELSE 1 END AS calls_without_usage
FROM calls AS c
LEFT JOIN span_gpu_costs AS g ON g.trace_id = c.trace_id AND g.span_id = c.span_id
LEFT JOIN model_names AS n ON n.provider = coalesce(c.provider, '') AND n.model = c.model
UNION ALL
SELECT s.trace_id, s.span_id, s.start_time, s.task_id, s.agent_name, s.service_name,
       s.k8s_namespace, s.conversation_id,
       CASE WHEN n.model IS NOT NULL THEN n.shown_provider ELSE s.provider END,
       coalesce(n.shown_model, s.response_model, s.request_model), s.provider,
       coalesce(s.response_model, s.request_model),
       s.attributes, s.resource_attributes,
       0, 0, 0, 0, 0, 0, 0,
       NULL, g.gpu_cost_usd, g.gpu_cost_usd,
       NULL, NULL, 0
FROM span_gpu_costs AS g
JOIN spans AS s ON s.trace_id = g.trace_id AND s.span_id = g.span_id
LEFT JOIN model_names AS n
       ON n.provider = coalesce(s.provider, '') AND n.model = coalesce(s.response_model, s.request_model)
ANTI JOIN calls AS c ON c.trace_id = g.trace_id AND c.span_id = g.span_id;
