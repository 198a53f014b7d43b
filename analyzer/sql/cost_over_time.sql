-- Total cost (analyzer/figures.py: tokens + GPU busy time) per time bucket and agent, for the report: the
-- $top most expensive agents, the rest as 'other'.
WITH by_agent AS (
    SELECT coalesce(agent_name, '(none)') AS agent, sum(total_cost_usd) AS cost
    FROM charges
    GROUP BY ALL
),
ranked AS (
    SELECT agent, row_number() OVER (ORDER BY cost DESC NULLS LAST, agent) AS rank FROM by_agent
)
SELECT time_bucket($bucket::INTERVAL, timezone('UTC', s.start_time)) AS bucket,
       CASE WHEN r.rank <= $top THEN r.agent ELSE 'other' END AS agent,
       coalesce(sum(s.total_cost_usd), 0) AS cost_usd
FROM charges AS s
JOIN ranked AS r ON r.agent = coalesce(s.agent_name, '(none)')
GROUP BY ALL
ORDER BY min(r.rank), bucket;
