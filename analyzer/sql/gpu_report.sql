-- `analyze gpu --by $by`: allocated / busy / idle slice-hours, utilization and cost per group.
-- gpu_usage rows are holder segments (gpu_views.sql), for --by agent / task split over the inference spans
-- that used them (gpu_attribution.sql); gpu_trace_tasks maps a trace to its task (resolved for --by task).
WITH facts AS (
    SELECT u.*, p.profile, p.usd_per_hour, sl.activity_source,
           CASE $by
               WHEN 'slice' THEN u.slice_id
               WHEN 'node' THEN u.node
               WHEN 'namespace' THEN u.namespace
               WHEN 'pod' THEN u.namespace || '/' || u.pod
               WHEN 'agent' THEN u.agent_name
               WHEN 'task' THEN lower(hex(t.task_id))
           END AS grp
    FROM gpu_usage AS u
    JOIN gpu_slice_prices AS p USING (slice_id)
    JOIN gpu_slices AS sl USING (slice_id)
    LEFT JOIN gpu_trace_tasks AS t ON $by = 'task' AND t.trace_id = u.trace_id
)
SELECT grp,
       string_agg(DISTINCT profile, ',' ORDER BY profile) AS profile,
       count(DISTINCT slice_id) AS slices,
       round(sum(allocated_s) / 3600, 6) AS allocated_slice_hours,
       round(sum(busy_s) / 3600, 6) AS busy_slice_hours,
       round(sum(busy_s) / nullif(sum(allocated_s), 0), 6) AS utilization,
       round(sum(allocated_s - busy_s) / 3600, 6) AS idle_slice_hours,
       -- money as exact DECIMAL sums of per-piece costs (gpu_piece_cost): busy + idle = allocated exactly,
       -- and busy_cost_usd by agent / task equals the sum of span_gpu_costs (analyze cost) for it
       sum(gpu_piece_cost(allocated_s, usd_per_hour)) AS allocated_cost_usd,
       sum(gpu_piece_cost(allocated_s, usd_per_hour) - gpu_piece_cost(busy_s, usd_per_hour)) AS idle_cost_usd,
       sum(gpu_piece_cost(busy_s, usd_per_hour)) AS busy_cost_usd,
       string_agg(DISTINCT activity_source, ',' ORDER BY activity_source) AS activity_source
FROM facts
GROUP BY grp
ORDER BY allocated_cost_usd DESC, grp NULLS LAST;
