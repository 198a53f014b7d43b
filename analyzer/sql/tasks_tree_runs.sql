-- `analyze task`: the agent runs of one task ($task_id) with their parent agent run.
SELECT trace_id, span_id, agent_name, depth, parent_agent_trace_id, parent_agent_span_id, start_time
FROM agent_runs
WHERE task_id = $task_id
ORDER BY depth, start_time, trace_id, span_id;
