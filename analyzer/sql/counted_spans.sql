-- The exactly-once token rule over the whole dataset (DESIGN.md "Normalizing GenAI dialects"); the same rule
-- as collector_ext/stitching.py (`mark_usage_counted`, `resolve_rows`), held equal by a test:
--   * in one trace, a span's usage counts only if no inference (llm/embedding) descendant carries usage
--     (a rollup on an agent / workflow / root span counts only where nothing below reported the call);
--     a span carries usage when any token column is > 0;
--   * a trace the receiver wrote whole: its usage_counted is that rule, already applied (and the receiver
--     also cleared later copies of a response id it remembered); a trace written in parts (any row with
--     stitch_state early_flush / shutdown_flush / no_root) is recomputed here over all its parts: walk up
--     from every inference span with usage (where a parent was not written, e.g. --keep genai, the walk
--     continues at the receiver's agent_span_id);
--   * two candidates with the same response_id (an instrumentation plus the SDK's own tracing, possibly in
--     two traces or two receivers) are one call: the smallest (trace_id, span_id) counts.
-- Views (lazy): evaluated only by the queries that use them.
CREATE OR REPLACE VIEW split_traces AS
SELECT DISTINCT trace_id FROM spans WHERE stitch_state IN ('early_flush', 'shutdown_flush', 'no_root');

CREATE OR REPLACE VIEW usage_covered AS
WITH RECURSIVE parts AS MATERIALIZED (
    SELECT s.trace_id, s.span_id, s.parent_span_id, s.agent_span_id, s.category,
           coalesce(s.input_tokens, 0) > 0 OR coalesce(s.output_tokens, 0) > 0
               OR coalesce(s.cache_read_tokens, 0) > 0 OR coalesce(s.cache_write_tokens, 0) > 0
               OR coalesce(s.reasoning_tokens, 0) > 0 AS has_usage
    FROM spans AS s
    SEMI JOIN split_traces AS t ON t.trace_id = s.trace_id
),
step AS MATERIALIZED (  -- the next span up: the parent if written, else the receiver's enclosing agent run
    SELECT u.trace_id, u.span_id, u.category, u.has_usage,
           CASE WHEN p.span_id IS NOT NULL THEN u.parent_span_id
                WHEN a.span_id IS NOT NULL AND u.agent_span_id <> u.span_id THEN u.agent_span_id END AS up_id
    FROM parts AS u
    LEFT JOIN (SELECT DISTINCT trace_id, span_id FROM parts) AS p
           ON p.trace_id = u.trace_id AND p.span_id = u.parent_span_id
    LEFT JOIN (SELECT DISTINCT trace_id, span_id FROM parts) AS a
           ON a.trace_id = u.trace_id AND a.span_id = u.agent_span_id
),
covered(trace_id, span_id) AS (  -- UNION (not ALL): each ancestor once, so a malformed loop ends
    SELECT trace_id, up_id FROM step
    WHERE has_usage AND category IN ('llm', 'embedding') AND up_id IS NOT NULL
    UNION
    SELECT s.trace_id, s.up_id
    FROM covered AS c
    JOIN step AS s ON s.trace_id = c.trace_id AND s.span_id = c.span_id
    WHERE s.up_id IS NOT NULL
)
SELECT trace_id, span_id, has_usage,
       EXISTS (SELECT 1 FROM covered AS c WHERE c.trace_id = step.trace_id AND c.span_id = step.span_id) AS covered
FROM step;

-- Cost matters here: every cost and task query reads counted_spans over the whole dataset. The common case
-- (traces written whole, no duplicate response ids) must stay a plain scan: the only joins are against the
-- small set of recomputed rows of split traces and the small set of response ids reported more than once.
CREATE OR REPLACE VIEW usage_candidates AS
SELECT s.trace_id, s.span_id, s.response_id,
       coalesce(CASE WHEN u.span_id IS NOT NULL THEN u.has_usage AND NOT u.covered ELSE s.usage_counted END, false)
           AS candidate
FROM spans AS s
LEFT JOIN usage_covered AS u ON u.trace_id = s.trace_id AND u.span_id = s.span_id;

CREATE OR REPLACE VIEW repeated_calls AS  -- response ids counted more than once, with the copy that counts
SELECT response_id, min(trace_id || span_id) AS first_key  -- trace_id is 16 bytes: orders (trace_id, span_id)
FROM usage_candidates
WHERE candidate AND response_id IS NOT NULL
GROUP BY response_id
HAVING count(*) > 1;

CREATE OR REPLACE VIEW duplicate_calls AS
SELECT c.trace_id, c.span_id
FROM usage_candidates AS c
JOIN repeated_calls AS r ON r.response_id = c.response_id
WHERE c.candidate AND c.trace_id || c.span_id <> r.first_key;

CREATE OR REPLACE VIEW counted_spans AS
WITH recounted AS MATERIALIZED (
    SELECT trace_id, span_id, has_usage AND NOT covered AS candidate FROM usage_covered
),
repeated AS MATERIALIZED (
    SELECT * FROM repeated_calls
)
SELECT s.*,
       coalesce(CASE WHEN u.span_id IS NOT NULL THEN u.candidate ELSE s.usage_counted END, false)
           AND (r.response_id IS NULL OR s.trace_id || s.span_id = r.first_key) AS counted
FROM spans AS s
LEFT JOIN recounted AS u ON u.trace_id = s.trace_id AND u.span_id = s.span_id
LEFT JOIN repeated AS r ON r.response_id = s.response_id;
