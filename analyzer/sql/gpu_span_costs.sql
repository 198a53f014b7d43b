-- GPU cost of each inference span: its share of the busy slice time (gpu_attribution.sql) x the slice's
-- price per hour. `analyze cost` joins this view for its gpu_cost_usd column.
CREATE OR REPLACE TEMP VIEW span_gpu_costs AS
SELECT u.trace_id, u.span_id, sum(u.busy_s * p.usd_per_hour) / 3600 AS gpu_cost_usd
FROM gpu_span_usage AS u
JOIN gpu_slice_prices AS p USING (slice_id)
WHERE u.span_id IS NOT NULL
GROUP BY u.trace_id, u.span_id;
