-- Attribution of busy GPU time to inference spans (and so to agents and tasks), after gpu_views.sql.
-- Installed only when asked for (--by agent / task, span_gpu_costs): it reads every inference span on a
-- pod that holds a slice.

-- Inference spans on pods that hold slices (span_rid: a compact key for the join below).
CREATE OR REPLACE TEMP TABLE gpu_pod_spans AS
SELECT row_number() OVER () AS span_rid, s.trace_id, s.span_id, s.k8s_namespace, s.k8s_pod, s.agent_name,
       epoch(s.start_time) AS t0, epoch(s.end_time) AS t1
FROM spans AS s
WHERE s.category IN ('llm', 'embedding')
  AND s.k8s_pod IN (SELECT DISTINCT pod FROM gpu_holdings)
  AND s.end_time > s.start_time;

-- Busy time of each activity piece shared by the inference spans overlapping it, in proportion to their
-- overlap (joined through time buckets of bucket_s: a pair meets in the bucket where their overlap starts).
CREATE OR REPLACE TEMP TABLE gpu_span_busy AS
WITH pieces AS (
    SELECT row_number() OVER () AS piece_id, * FROM gpu_activity_pieces WHERE w1 > w0 AND weight > 0
),
piece_buckets AS (
    SELECT piece_id, namespace, pod, w0, w1, (w1 - w0) * weight AS busy_s,
           unnest(range(floor(w0 / (SELECT bucket_s FROM gpu_params))::BIGINT,
                        floor(w1 / (SELECT bucket_s FROM gpu_params))::BIGINT + 1)) AS bucket
    FROM pieces
),
span_buckets AS (
    SELECT span_rid, k8s_namespace, k8s_pod, t0, t1,
           unnest(range(floor(t0 / (SELECT bucket_s FROM gpu_params))::BIGINT,
                        floor(t1 / (SELECT bucket_s FROM gpu_params))::BIGINT + 1)) AS bucket
    FROM gpu_pod_spans
),
pairs AS (
    SELECT p.piece_id, s.span_rid, p.busy_s, least(s.t1, p.w1) - greatest(s.t0, p.w0) AS covered
    FROM piece_buckets AS p
    JOIN span_buckets AS s
      ON s.k8s_pod = p.pod AND s.bucket = p.bucket AND coalesce(s.k8s_namespace = p.namespace, true)
    WHERE s.t0 < p.w1 AND s.t1 > p.w0
      AND p.bucket = floor(greatest(s.t0, p.w0) / (SELECT bucket_s FROM gpu_params))::BIGINT
),
shares AS (
    SELECT piece_id, span_rid, busy_s * covered / sum(covered) OVER (PARTITION BY piece_id) AS busy_s FROM pairs
)
SELECT x.slice_id, x.namespace, x.pod, x.seg_start, sp.trace_id, sp.span_id, sp.agent_name, x.busy_s
FROM (
    SELECT sh.span_rid, pc.slice_id, pc.namespace, pc.pod, pc.seg_start, sum(sh.busy_s) AS busy_s
    FROM shares AS sh JOIN pieces AS pc USING (piece_id)
    GROUP BY sh.span_rid, pc.slice_id, pc.namespace, pc.pod, pc.seg_start
) AS x
JOIN gpu_pod_spans AS sp USING (span_rid);

-- gpu_segment_usage split over the spans that used each segment (allocated time in proportion to their
-- busy share) plus a remainder no span covers: every grouping still sums to the same totals.
CREATE OR REPLACE TEMP TABLE gpu_span_usage AS
WITH attributed AS (
    SELECT slice_id, namespace, pod, seg_start, sum(busy_s) AS busy_s
    FROM gpu_span_busy GROUP BY slice_id, namespace, pod, seg_start
)
SELECT g.slice_id, g.node, g.namespace, g.pod, sp.trace_id, sp.span_id, sp.agent_name,
       g.allocated_s * sp.busy_s / g.busy_s AS allocated_s,
       sp.busy_s
FROM gpu_segment_usage AS g
JOIN gpu_span_busy AS sp USING (slice_id, namespace, pod, seg_start)
WHERE g.busy_s > 0
UNION ALL
SELECT g.slice_id, g.node, g.namespace, g.pod, NULL, NULL, NULL,
       CASE WHEN g.busy_s > 0 THEN g.allocated_s * (g.busy_s - coalesce(a.busy_s, 0)) / g.busy_s
            ELSE g.allocated_s END,
       g.busy_s - coalesce(a.busy_s, 0)
FROM gpu_segment_usage AS g
LEFT JOIN attributed AS a USING (slice_id, namespace, pod, seg_start);

CREATE OR REPLACE TEMP VIEW gpu_usage AS SELECT * FROM gpu_span_usage;
