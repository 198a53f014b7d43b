-- The exactly-once token rule over the whole dataset (DESIGN.md "Normalizing GenAI dialects"):
-- a span's usage counts when the receiver marked it usage_counted (no inference descendant in its trace)
-- and it is the first span (by trace_id, span_id) of its gen_ai.response.id across the whole dataset,
-- since an instrumentation plus the SDK's own tracing report each call twice, possibly in two traces.
CREATE OR REPLACE VIEW duplicate_calls AS
SELECT trace_id, span_id
FROM (
    SELECT trace_id, span_id,
           row_number() OVER (PARTITION BY response_id ORDER BY trace_id, span_id) AS nth
    FROM spans
    WHERE response_id IS NOT NULL AND usage_counted
)
WHERE nth > 1;

CREATE OR REPLACE VIEW counted_spans AS
SELECT s.*,
       coalesce(s.usage_counted, false) AND d.span_id IS NULL AS counted
FROM spans AS s
LEFT JOIN duplicate_calls AS d USING (trace_id, span_id);
