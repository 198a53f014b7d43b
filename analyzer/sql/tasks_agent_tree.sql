-- Stitching rules, SQL form, part 3b: agent_runs, from tasks_agent_runs.sql's agent_run_parents and the depth
-- of every run that analyzer/tasks.py resolved over them: agent_run_forest(node, depth, cut), one row per
-- run node. `cut`: a run whose parent chain came back to itself (only malformed span parent loops make one):
-- like a trace cycle, its smallest run is a top.
CREATE OR REPLACE TEMP TABLE agent_runs AS
SELECT r.trace_id, r.span_id, r.task_id, r.agent_name, r.agent_id,
       CASE WHEN NOT f.cut THEN r.parent_agent_trace_id END AS parent_agent_trace_id,
       CASE WHEN NOT f.cut THEN r.parent_agent_span_id END AS parent_agent_span_id,
       p.agent_name AS parent_agent_name,
       f.depth::INTEGER AS depth,
       r.start_time, r.end_time, r.service_name, r.k8s_namespace
FROM agent_run_parents AS r
JOIN agent_run_forest AS f ON f.node = r.node
LEFT JOIN agent_run_parents AS p ON p.node = r.parent_node AND NOT f.cut;

DROP TABLE agent_run_parents;
