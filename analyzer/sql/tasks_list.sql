-- `analyze tasks` / GET /api/tasks / the console's task list: the rows of task_rows (analyzer/sql/tasks_rows.sql)
-- that match, in order, one page. Bound: $since, $until (NULL: open; on the task's start), $agent (NULL: any;
-- else tasks with an agent run of that name), $status (NULL: any; 'failed' or 'ok'), $min_cost (NULL: any;
-- else an inclusive cost known and at least that), $min_depth (NULL: any; else agent runs nested at least
-- that deep), $limit, $offset. {order} is filled in by analyzer/task_queries.py from a fixed list.
SELECT {columns}
FROM task_rows
WHERE ($since::TIMESTAMPTZ IS NULL OR _start_time >= $since::TIMESTAMPTZ)
  AND ($until::TIMESTAMPTZ IS NULL OR _start_time < $until::TIMESTAMPTZ)
  AND ($agent::VARCHAR IS NULL OR list_contains(_agent_names, $agent::VARCHAR))
  AND ($status::VARCHAR IS NULL OR status = $status::VARCHAR)
  AND ($min_cost::DOUBLE IS NULL OR inclusive_cost_usd >= $min_cost::DOUBLE)
  AND ($min_depth::INTEGER IS NULL OR max_depth >= $min_depth::INTEGER)
ORDER BY {order}
LIMIT $limit OFFSET $offset;
