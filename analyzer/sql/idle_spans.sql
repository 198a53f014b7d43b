-- What the idle curves and the warm-pool recommendation read of the spans (analyzer/idle.py,
-- analyzer/sandbox_cost.py): the agent runs and sandbox start-ups with their group columns, and the pods
-- each agent ran on. Views over `spans`: a long-lived process keeps their rows (analyzer/snapshot.py), so a
-- new time window is a query over ~1 row per agent run, not a scan of the Parquet.
CREATE OR REPLACE TEMP VIEW idle_spans AS
SELECT coalesce(agent_span_id = span_id, category = 'agent') AS agent_run,  -- analyzer/sql/idle_runs.sql
       name, agent_name, service_name, k8s_namespace, start_time, end_time
FROM spans
WHERE coalesce(agent_span_id = span_id, category = 'agent') OR name = 'sandbox.startup';

CREATE OR REPLACE TEMP VIEW agent_pods AS
SELECT DISTINCT agent_name, k8s_namespace, k8s_pod
FROM spans
WHERE k8s_pod IS NOT NULL;
