-- task_rows: one row per task with every column of `analyze tasks` (the listing: analyzer/sql/tasks_list.sql
-- filters, orders and pages these rows). The figures (the fixed list of analyzer/figures.py, filled in by
-- analyzer/task_queries.py) sum the task's charges rows, all its traces (inclusive); direct_cost_usd is the
-- same total over the task's own (top) trace only. Spans and charges are first summed per trace, then the
-- traces per task (every figure is a sum: the figures of the per-trace figures are the task's), so no row per
-- span is joined to its task. The task's stitch_state lists every state other than 'ok' met
-- in it: the link states of its traces and the receiver's early writes. Columns starting with _ are for
-- filtering and ordering only. A view: a long-lived process keeps its rows (analyzer/snapshot.py).
CREATE OR REPLACE TEMP VIEW task_rows AS
WITH trace_counts AS (
    SELECT task_id, count(*) AS traces FROM trace_tasks GROUP BY task_id
),
trace_spans AS (  -- per trace: its times, tool calls, whether a root span ended in error, its early writes
    SELECT trace_id,
           min(start_time) AS start_time,
           max(end_time) AS end_time,
           count(*) FILTER (WHERE category = 'tool') AS tool_calls,
           bool_or(parent_span_id IS NULL AND status_code = 'error') AS root_failed,
           list(DISTINCT stitch_state) FILTER (WHERE stitch_state IN ('early_flush', 'shutdown_flush', 'no_root'))
               AS split_states
    FROM spans
    GROUP BY trace_id
),
trace_charges AS (  -- per trace: the figures of its charges rows, under the charges columns' names
    SELECT trace_id,
           {figures}
    FROM charges
    GROUP BY trace_id
),
span_totals AS (
    SELECT t.task_id,
           min(s.start_time) AS start_time,
           max(s.end_time) AS end_time,
           -- the task failed when its top trace's root span ended in error
           bool_or(s.root_failed AND t.trace_id = t.task_id) AS failed,
           sum(s.tool_calls)::BIGINT AS tool_calls,
           {figures},
           sum(c.total_cost_usd) FILTER (WHERE t.trace_id = t.task_id) AS direct_cost_usd
    FROM trace_tasks AS t
    JOIN trace_spans AS s USING (trace_id)
    LEFT JOIN trace_charges AS c USING (trace_id)
    GROUP BY t.task_id
),
run_totals AS (
    SELECT task_id,
           count(*) AS agent_runs,
           count(DISTINCT agent_name) AS agents,
           max(depth) AS max_depth,
           list(DISTINCT agent_name) FILTER (WHERE agent_name IS NOT NULL) AS agent_names
    FROM agent_runs
    GROUP BY task_id
),
roots AS (
    SELECT task_id, agent_name AS root_agent
    FROM (
        SELECT task_id, agent_name,
               row_number() OVER (PARTITION BY task_id ORDER BY depth, start_time, span_id) AS nth
        FROM agent_runs
        WHERE trace_id = task_id  -- the top trace's first agent run; none: the top trace's service
    )
    WHERE nth = 1
),
top_services AS (
    SELECT trace_id AS task_id, service_name FROM trace_ids
),
states AS (
    SELECT task_id, string_agg(DISTINCT state, ',' ORDER BY state) AS odd_states
    FROM (
        SELECT task_id, stitch_state AS state FROM trace_tasks WHERE stitch_state <> 'ok'
        UNION ALL
        SELECT t.task_id, unnest(s.split_states) FROM trace_spans AS s JOIN trace_tasks AS t USING (trace_id)
    )
    GROUP BY task_id
)
SELECT lower(hex(s.task_id)) AS task_id,
       coalesce(r.root_agent, ts.service_name) AS root_agent,
       CASE WHEN s.failed THEN 'failed' ELSE 'ok' END AS status,
       -- ISO text in UTC: converting 100 k timestamps to Python datetimes costs more than the query
       strftime(timezone('UTC', s.start_time), '%Y-%m-%dT%H:%M:%S.%fZ') AS "start",
       strftime(timezone('UTC', s.end_time), '%Y-%m-%dT%H:%M:%S.%fZ') AS "end",
       tc.traces,
       coalesce(rt.agent_runs, 0) AS agent_runs,
       coalesce(rt.agents, 0) AS agents,
       coalesce(rt.max_depth, 0) AS max_depth,
       s.tool_calls,
       {figure_names},
       s.direct_cost_usd,
       coalesce(st.odd_states, 'ok') AS stitch_state,
       s.start_time AS _start_time, s.end_time AS _end_time, s.task_id AS _task_id,
       coalesce(rt.agent_names, []) AS _agent_names
FROM span_totals AS s
JOIN trace_counts AS tc USING (task_id)
LEFT JOIN run_totals AS rt USING (task_id)
LEFT JOIN roots AS r USING (task_id)
LEFT JOIN top_services AS ts USING (task_id)
LEFT JOIN states AS st USING (task_id);
