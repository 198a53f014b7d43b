-- Cost per group. {keys}, {key_names}, {task_join} and {filters} are filled by analyzer/cost.py from its
-- fixed whitelist of group-key expressions (never user text); every value is a bound parameter.
-- Rows: counted calls from span_costs, plus GPU cost per span from span_gpu_costs (zero rows when absent).
-- A call is unpriced when it has neither a token price nor GPU time (self-hosted models are priced by GPU).
WITH usage AS (
    SELECT {keys},
           1 AS llm_calls, s.input_tokens, s.output_tokens, s.cache_read_tokens, s.cache_write_tokens,
           s.reasoning_tokens, s.cost_usd,
           CASE WHEN s.priced OR gpu.span_id IS NOT NULL THEN 0 ELSE 1 END AS unpriced_calls,
           NULL::DOUBLE AS gpu_cost_usd,
           s.reported_cost_usd
    FROM span_costs AS s
    LEFT JOIN span_gpu_costs AS gpu ON gpu.trace_id = s.trace_id AND gpu.span_id = s.span_id
    {task_join}
    WHERE ($since IS NULL OR s.start_time >= $since) AND ($until IS NULL OR s.start_time < $until){filters}
    UNION ALL
    SELECT {keys},
           0, 0, 0, 0, 0, 0, NULL, 0,
           g.gpu_cost_usd::DOUBLE,
           NULL
    FROM span_gpu_costs AS g
    JOIN spans AS s ON s.trace_id = g.trace_id AND s.span_id = g.span_id
    {task_join}
    WHERE ($since IS NULL OR s.start_time >= $since) AND ($until IS NULL OR s.start_time < $until){filters}
)
SELECT {key_names},
       sum(llm_calls)::BIGINT AS llm_calls,
       sum(input_tokens)::BIGINT AS input_tokens,
       sum(output_tokens)::BIGINT AS output_tokens,
       sum(cache_read_tokens)::BIGINT AS cache_read_tokens,
       sum(cache_write_tokens)::BIGINT AS cache_write_tokens,
       sum(reasoning_tokens)::BIGINT AS reasoning_tokens,
       sum(cost_usd) AS cost_usd,
       sum(unpriced_calls)::BIGINT AS unpriced_calls,
       coalesce(sum(gpu_cost_usd), 0) AS gpu_cost_usd,
       sum(reported_cost_usd) AS reported_cost_usd
FROM usage
GROUP BY ALL
ORDER BY cost_usd DESC NULLS LAST, {key_names}
LIMIT $top;
