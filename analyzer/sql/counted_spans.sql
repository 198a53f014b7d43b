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

CREATE OR REPLACE VIEW usage_candidates AS
SELECT s.trace_id, s.span_id, s.response_id
FROM spans AS s
ANTI JOIN split_traces AS t ON t.trace_id = s.trace_id
WHERE s.usage_counted
UNION ALL
SELECT s.trace_id, s.span_id, s.response_id
FROM spans AS s
JOIN usage_covered AS u ON u.trace_id = s.trace_id AND u.span_id = s.span_id
WHERE u.has_usage AND NOT u.covered;

CREATE OR REPLACE VIEW duplicate_calls AS
SELECT trace_id, span_id
FROM (
    SELECT trace_id, span_id,
           row_number() OVER (PARTITION BY response_id ORDER BY trace_id, span_id) AS nth
    FROM usage_candidates
    WHERE response_id IS NOT NULL
)
WHERE nth > 1;

CREATE OR REPLACE VIEW counted_spans AS
WITH candidates AS MATERIALIZED (
    SELECT trace_id, span_id, response_id, trace_id || span_id AS call_key FROM usage_candidates
),
first_calls AS (  -- trace_id is 16 bytes: ordering trace_id || span_id orders (trace_id, span_id)
    SELECT response_id, min(call_key) AS call_key
    FROM candidates
    WHERE response_id IS NOT NULL
    GROUP BY response_id
)
SELECT s.*,
       c.span_id IS NOT NULL AND (c.response_id IS NULL OR c.call_key = f.call_key) AS counted
FROM spans AS s
LEFT JOIN candidates AS c ON c.trace_id = s.trace_id AND c.span_id = s.span_id
LEFT JOIN first_calls AS f ON f.response_id = c.response_id;
