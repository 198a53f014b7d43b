-- The report's headline: counted calls, computed cost, unpriced calls, provider-reported cost.
SELECT count(*) AS llm_calls,
       sum(cost_usd) AS cost_usd,
       count(*) FILTER (WHERE NOT priced) AS unpriced_calls,
       sum(reported_cost_usd) AS reported_cost_usd
FROM span_costs;
