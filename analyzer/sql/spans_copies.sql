-- Rows unique by (trace_id, span_id): the copies of a span that the `spans` view leaves out (analyzer/dataset.py).
-- OTLP delivery is at least once (a client retrying after a lost answer, a WAL replay, two receivers with one
-- writer id), so a span can be written twice. Of its copies the view keeps one, deterministically:
--   * a copy written with its whole trace over one written in parts before the trace was complete
--     (early_flush / shutdown_flush / no_root): its stitching and usage_counted saw the whole trace;
--   * then the latest received_time (the last delivery);
--   * then the first file and row (file names sort by writer id and sequence).
-- Copies are rare: analyzer/span_copies.py (which remembers the answer per file) knows the 64-bit hashes of
-- the span ids that occur more than once (_repeated_span_hashes); only those rows are read whole. span_rows
-- carries each row's file and row number.
WITH suspects AS (
    SELECT trace_id, span_id, stitch_state, received_time, filename, file_row_number
    FROM span_rows
    WHERE hash(span_id) IN (SELECT span_hash FROM _repeated_span_hashes)
)
SELECT filename, file_row_number
FROM (
    SELECT filename, file_row_number,
           row_number() OVER (
               PARTITION BY trace_id, span_id
               ORDER BY coalesce(stitch_state IN ('early_flush', 'shutdown_flush', 'no_root'), false),
                        received_time DESC NULLS LAST, filename, file_row_number
           ) AS nth
    FROM suspects
)
WHERE nth > 1;
