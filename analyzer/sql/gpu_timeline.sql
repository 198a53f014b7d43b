-- Per-slice utilization over time (the notebook's timeline): busy / allocated seconds per slice and bucket
-- of $step_s seconds, from the activity pieces and holder segments of gpu_views.sql.
WITH steps AS (
    SELECT g.slice_id, b.step * $step_s AS bucket_start,
           (least(g.seg_end, (b.step + 1) * $step_s) - greatest(g.seg_start, b.step * $step_s)) / g.holders
               AS allocated_s
    FROM gpu_segments AS g,
         unnest(range(floor(g.seg_start / $step_s)::BIGINT, ceil(g.seg_end / $step_s)::BIGINT)) AS b(step)
),
busy AS (
    SELECT p.slice_id, b.step * $step_s AS bucket_start,
           sum((least(p.w1, (b.step + 1) * $step_s) - greatest(p.w0, b.step * $step_s)) * p.weight) AS busy_s
    FROM gpu_activity_pieces AS p,
         unnest(range(floor(p.w0 / $step_s)::BIGINT, ceil(p.w1 / $step_s)::BIGINT)) AS b(step)
    WHERE p.w1 > p.w0
    GROUP BY ALL
)
SELECT a.slice_id, to_timestamp(a.bucket_start) AS time,
       sum(a.allocated_s) AS allocated_s,
       coalesce(any_value(b.busy_s), 0) AS busy_s,
       coalesce(any_value(b.busy_s), 0) / nullif(sum(a.allocated_s), 0) AS utilization
FROM steps AS a
LEFT JOIN busy AS b USING (slice_id, bucket_start)
WHERE a.allocated_s > 0
GROUP BY a.slice_id, a.bucket_start
ORDER BY a.slice_id, a.bucket_start;
