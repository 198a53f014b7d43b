-- GPU cost of each inference span: its share of the busy slice time (gpu_attribution.sql) x the slice's
-- price per hour. A table: `analyze gpu` may re-install the gpu_* tables for another time window later.
-- Each (span, slice segment) piece is one exact DECIMAL (`gpu_piece_cost`), the same pieces that
-- `analyze gpu --by agent|task` sums for busy_cost_usd: both views give equal sums in any order.
-- analyzer/sql/charges.sql charges it to the calls without a token price (gpu_busy_cost_usd).
CREATE OR REPLACE TEMP TABLE span_gpu_costs AS
SELECT u.trace_id, u.span_id, sum(gpu_piece_cost(u.busy_s, p.usd_per_hour)) AS gpu_cost_usd
FROM gpu_span_usage AS u
JOIN gpu_slice_prices AS p USING (slice_id)
WHERE u.span_id IS NOT NULL
GROUP BY u.trace_id, u.span_id;
