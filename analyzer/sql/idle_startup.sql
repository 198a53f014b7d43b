-- Measured sandbox start-up times: spans named 'sandbox.startup' (their duration is the time from the
-- sandbox's creation to ready), per group of the same grouping as the agent runs, p90 in seconds.
SELECT coalesce(
           CASE $by WHEN 'agent' THEN agent_name WHEN 'service' THEN service_name ELSE k8s_namespace END,
           '(none)'
       ) AS grp,
       count(*) AS n_startups,
       quantile_cont((epoch_ns(end_time) - epoch_ns(start_time)) / 1e9, 0.9) AS p90_startup_s
FROM idle_spans
WHERE name = 'sandbox.startup'
  AND ($since IS NULL OR start_time >= $since)
  AND ($until IS NULL OR start_time < $until)
  AND ($namespace IS NULL OR k8s_namespace = $namespace)
GROUP BY ALL;
