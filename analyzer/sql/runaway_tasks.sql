-- Runaway measures per task (the rules of collector_ext/traces/runaway.py, which flags them live):
--   subagents     sub-agent traces linked under the task (its traces but the top)
--   depth         the longest chain of links below the top trace
--   tool_repeats  the most calls of one tool with the same arguments (gen_ai.tool.call.arguments; the
--                 tool name alone, else the span name, where none are reported)
--   llm_calls     the figure llm_calls (analyzer/figures.py) of the task's calls
--   failed_calls  LLM and embedding calls that ended in error, a response id once
--   cost_usd      the figure token_cost_usd of the task's calls
-- and the history each is judged against: over the root agent's previous tasks (by end time, at most
-- HISTORY_TASKS previous ones), their count and p99 (quantile_cont, as the receiver's `quantile_cont`).
-- Needs trace_tasks / agent_runs (analyzer.tasks) and charges (analyzer.analysis).
WITH task_traces AS (
    SELECT task_id, count(*) - 1 AS subagents, max(depth) AS depth FROM trace_tasks GROUP BY task_id
),
task_spans AS (
    SELECT t.task_id, s.category, s.status_code, s.response_id, s.trace_id, s.span_id, s.start_time, s.end_time,
           coalesce(s.tool_name, s.name) AS tool, s.attributes['gen_ai.tool.call.arguments'] AS arguments
    FROM spans AS s
    JOIN trace_tasks AS t ON t.trace_id = s.trace_id
),
task_times AS (
    SELECT task_id, min(start_time) AS task_start, max(end_time) AS task_end,
           count(DISTINCT CASE WHEN category IN ('llm', 'embedding') AND status_code = 'error'
                               THEN coalesce(response_id, hex(trace_id) || hex(span_id)) END) AS failed_calls
    FROM task_spans
    GROUP BY task_id
),
task_tools AS (
    SELECT task_id, max(calls) AS tool_repeats
    FROM (SELECT task_id, count(*) AS calls FROM task_spans WHERE category = 'tool' GROUP BY task_id, tool, arguments)
    GROUP BY task_id
),
task_calls AS (
    SELECT t.task_id, sum(c.llm_calls) AS llm_calls, coalesce(sum(c.token_cost_usd), 0) AS cost_usd
    FROM charges AS c
    JOIN trace_tasks AS t ON t.trace_id = c.trace_id
    GROUP BY t.task_id
),
task_roots AS (
    SELECT task_id, arg_min(agent_name, start_time) AS root_agent
    FROM agent_runs
    WHERE trace_id = task_id AND parent_agent_trace_id IS NULL
    GROUP BY task_id
),
measures AS (
    SELECT tt.task_id, coalesce(r.root_agent, '') AS root_agent, tm.task_start, tm.task_end,
           tt.subagents::DOUBLE AS subagents, tt.depth::DOUBLE AS depth,
           coalesce(tl.tool_repeats, 0)::DOUBLE AS tool_repeats, coalesce(c.llm_calls, 0)::DOUBLE AS llm_calls,
           tm.failed_calls::DOUBLE AS failed_calls, coalesce(c.cost_usd, 0)::DOUBLE AS cost_usd
    FROM task_traces AS tt
    JOIN task_times AS tm ON tm.task_id = tt.task_id
    LEFT JOIN task_tools AS tl ON tl.task_id = tt.task_id
    LEFT JOIN task_calls AS c ON c.task_id = tt.task_id
    LEFT JOIN task_roots AS r ON r.task_id = tt.task_id
)
SELECT *
FROM (
    SELECT m.*,
           count(*) OVER past AS past_tasks,
           quantile_cont(subagents, 0.99) OVER past AS p99_subagents,
           quantile_cont(depth, 0.99) OVER past AS p99_depth,
           quantile_cont(tool_repeats, 0.99) OVER past AS p99_tool_repeats,
           quantile_cont(llm_calls, 0.99) OVER past AS p99_llm_calls,
           quantile_cont(failed_calls, 0.99) OVER past AS p99_failed_calls,
           quantile_cont(cost_usd, 0.99) OVER past AS p99_cost_usd
    FROM measures AS m
    WINDOW past AS (PARTITION BY root_agent ORDER BY task_end, task_id
                    ROWS BETWEEN {history} PRECEDING AND 1 PRECEDING)
)
-- only tasks past the lowest limit any rule can set (threshold / history factor): the rest pass every rule
WHERE subagents > $floor_subagents OR depth > $floor_depth OR tool_repeats > $floor_tool_repeats
   OR llm_calls > $floor_llm_calls OR failed_calls > $floor_failed_calls OR cost_usd > $floor_cost_usd
ORDER BY task_start, task_id;
