-- Agent runs (one span per run) of the chosen grouping, as ns integers. A span is a run where the receiver
-- attributed it to itself (agent_span_id: graph runs included, wrappers and LangGraph's steps not, as
-- collector_ext/traces/stitching.py decides); spans written without attribution: the agent spans.
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
    FROM idle_spans
    WHERE agent_run
      AND ($since IS NULL OR start_time >= $since)
      AND ($until IS NULL OR start_time < $until)
      AND ($namespace IS NULL OR k8s_namespace = $namespace)
)
WHERE $group IS NULL OR grp = $group;
