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
           coalesce(s.provider, '') AS provider, coalesce(s.response_model, s.request_model) AS model,
           s.response_id, coalesce(s.usage_counted, false) AS usage_counted,
           coalesce(s.input_tokens, 0) > 0 OR coalesce(s.output_tokens, 0) > 0
               OR coalesce(s.cache_read_tokens, 0) > 0 OR coalesce(s.cache_write_tokens, 0) > 0
               OR coalesce(s.reasoning_tokens, 0) > 0 AS has_usage
    FROM spans AS s
    SEMI JOIN split_traces AS t ON t.trace_id = s.trace_id
),
step AS MATERIALIZED (  -- the next span up: the parent if written, else the receiver's enclosing agent run
    SELECT u.trace_id, u.span_id, u.category, u.provider, u.model, u.response_id, u.usage_counted, u.has_usage,
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
SELECT trace_id, span_id, provider, model, response_id, usage_counted, has_usage,
       EXISTS (SELECT 1 FROM covered AS c WHERE c.trace_id = step.trace_id AND c.span_id = step.span_id) AS covered
FROM step;

-- Cost matters here: every cost and task query reads counted_spans (or counted_calls) over the whole dataset.
-- The common case (traces written whole, no duplicate response ids) must stay a plain scan: the main scan
-- joins only a small table of exceptions (the recomputed rows of split traces and the duplicate copies of a
-- call), on the span's key. Finding the duplicates takes one narrow pass over 64-bit hashes of the response
-- ids (sorted, not grouped: grouping millions of id strings costs several times more), then an exact pass
-- over the few suspect ids only.
CREATE OR REPLACE VIEW usage_candidates AS
SELECT s.trace_id, s.span_id, s.response_id,
       coalesce(CASE WHEN u.span_id IS NOT NULL THEN u.has_usage AND NOT u.covered ELSE s.usage_counted END, false)
           AS candidate
FROM spans AS s
LEFT JOIN usage_covered AS u ON u.trace_id = s.trace_id AND u.span_id = s.span_id;

CREATE OR REPLACE VIEW suspect_response_hashes AS
-- Hashes of response ids that more than one span may count, from a superset of the candidates that needs
-- no join: the spans the receiver counted (a filter the scan applies itself), plus the recomputed spans with
-- usage it did not count. Sorting the hashes and comparing neighbours is faster here than a hash aggregate
-- over millions of groups.
SELECT DISTINCT response_hash
FROM (
    SELECT response_hash, lag(response_hash) OVER (ORDER BY response_hash) AS previous_hash
    FROM (
        SELECT hash(response_id) AS response_hash FROM spans WHERE usage_counted AND response_id IS NOT NULL
        UNION ALL
        SELECT hash(response_id) FROM usage_covered
        WHERE has_usage AND NOT usage_counted AND response_id IS NOT NULL
    )
)
WHERE response_hash = previous_hash;

CREATE OR REPLACE VIEW duplicate_calls AS  -- every candidate copy of a call but the one that counts
SELECT trace_id, span_id
FROM (
    SELECT trace_id, span_id,
           -- trace_id is 16 bytes: orders (trace_id, span_id); the smallest copy counts
           rank() OVER (PARTITION BY response_id ORDER BY trace_id || span_id) AS copy
    FROM usage_candidates
    WHERE candidate AND response_id IS NOT NULL
      AND hash(response_id) IN (SELECT response_hash FROM suspect_response_hashes)
)
WHERE copy > 1;

CREATE OR REPLACE VIEW usage_exceptions AS  -- small: rows of split traces (recomputed), duplicate copies (never)
SELECT trace_id, span_id, bool_and(counts) AS counts
FROM (
    SELECT trace_id, span_id, has_usage AND NOT covered AS counts FROM usage_covered
    UNION ALL
    SELECT trace_id, span_id, false FROM duplicate_calls
)
GROUP BY trace_id, span_id;

-- Every span with `counted`: the receiver's usage_counted unless the span is an exception.
CREATE OR REPLACE VIEW counted_spans AS
WITH exceptions AS MATERIALIZED (SELECT * FROM usage_exceptions)
SELECT s.*,
       coalesce(CASE WHEN x.span_id IS NOT NULL THEN x.counts ELSE s.usage_counted END, false) AS counted
FROM spans AS s
LEFT JOIN exceptions AS x ON x.trace_id = s.trace_id AND x.span_id = s.span_id;

-- Only the spans whose usage counts (counted_spans WHERE counted), written so that the scan filters on
-- usage_counted itself and skips the rest: the spans the receiver counted that are no exception, plus the
-- exceptions that count (no rows, and no second scan, when there are none).
CREATE OR REPLACE VIEW counted_calls AS
WITH exceptions AS MATERIALIZED (SELECT * FROM usage_exceptions)
SELECT s.*
FROM spans AS s
ANTI JOIN exceptions AS x ON x.trace_id = s.trace_id AND x.span_id = s.span_id
WHERE s.usage_counted
UNION ALL
SELECT s.*
FROM spans AS s
SEMI JOIN exceptions AS x ON x.trace_id = s.trace_id AND x.span_id = s.span_id AND x.counts;
