-- `analyze task`: the direct figures (analyzer/figures.py) per tree node (agent run) of one task
-- ($task_id); NULL node: the root. The figure list is filled in by analyzer/task_queries.py.
SELECT node_trace_id, node_span_id,
       count(*) FILTER (WHERE is_tool_call) AS tool_calls,
       {figures}
FROM task_span_nodes
WHERE task_id = $task_id
GROUP BY node_trace_id, node_span_id;
