-- Stitching rules, SQL form, part 2b: the task of every trace, from tasks_resolve.sql's parent links and the
-- forest analyzer/tasks.py resolved over them: trace_forest(node, task_node, depth, in_cycle, cut, shared),
-- one row per trace node (see tasks_resolve.sql for the rules).
CREATE OR REPLACE TEMP TABLE trace_tasks AS
SELECT t.trace_id,
       top.trace_id AS task_id,
       CASE WHEN NOT f.cut THEN p.parent_trace_id END AS parent_trace_id,
       CASE WHEN NOT f.cut THEN p.parent_span_id END AS parent_span_id,
       f.depth::INTEGER AS depth,
       CASE WHEN f.shared THEN 'shared_calls'
            WHEN f.in_cycle THEN 'cycle'
            ELSE coalesce(p.link_state, 'ok') END AS stitch_state
FROM trace_ids AS t
JOIN trace_forest AS f ON f.node = t.node
JOIN trace_ids AS top ON top.node = f.task_node
LEFT JOIN trace_parent AS p ON p.trace_id = t.trace_id;
