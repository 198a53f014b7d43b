-- Agent runs (one span with category 'agent' per run) of the chosen grouping, as ns integers.
-- $by picks the group column ('agent' | 'service' | 'namespace'); the other parameters are optional filters.
CREATE OR REPLACE TEMP TABLE idle_runs AS
SELECT grp, start_ns, greatest(end_ns, start_ns) AS end_ns
FROM (
    SELECT coalesce(
               CASE $by WHEN 'agent' THEN agent_name WHEN 'service' THEN service_name ELSE k8s_namespace END,
               '(none)'
           ) AS grp,
           epoch_ns(start_time) AS start_ns,
           epoch_ns(end_time) AS end_ns
    FROM spans
    WHERE category = 'agent'
      AND ($since IS NULL OR start_time >= $since)
      AND ($until IS NULL OR start_time < $until)
      AND ($namespace IS NULL OR k8s_namespace = $namespace)
)
WHERE $group IS NULL OR grp = $group;
