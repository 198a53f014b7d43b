-- GPU slice use (DESIGN.md "GPU slices"): allocations x activity -> allocated / busy slice-seconds.
-- Each step is a temporary table, computed once per `analyze gpu` run (DuckDB would re-plan nested views).
-- Reads the table gpu_params(since_s, until_s, max_sample_s, bucket_s) that analyzer/gpu.py fills with bound
-- values (bucket_s only sizes a join's time buckets: any value gives the same answer).
-- All times are epoch seconds (DOUBLE) from here on.

-- 1. Allocation intervals. The poller re-writes open intervals with a later last_seen: keep the max.
CREATE OR REPLACE TEMP TABLE gpu_allocation_intervals AS
SELECT node, namespace, pod, container, source, claim_name, claim_namespace, driver, pool, device, share_id,
       resource_name, device_ids,
       epoch(first_seen) AS first_s,
       epoch(max(last_seen)) AS last_s
FROM gpu_allocations
GROUP BY node, namespace, pod, container, source, claim_name, claim_namespace, driver, pool, device, share_id,
         resource_name, device_ids, first_seen;

-- 2. A slice is one physical device (a MIG instance or a whole GPU): a DRA device of a driver's pool, or one
-- device-plugin device id. A holding is one pod holding one slice over one merged interval (a pod's
-- containers sharing a claim, and re-written intervals, merge; a pod restart leaves a gap).
CREATE OR REPLACE TEMP TABLE gpu_slice_intervals AS
SELECT *,
       CASE WHEN source = 'dra' THEN concat_ws('/', node, driver, pool, device)
            ELSE concat_ws('/', node, resource_name, device_id) END AS slice_id
FROM (
    SELECT *, unnest(CASE WHEN source = 'device_plugin' THEN device_ids ELSE [NULL] END) AS device_id
    FROM gpu_allocation_intervals
);

CREATE OR REPLACE TEMP TABLE gpu_holdings AS
WITH ordered AS (
    SELECT *,
           max(last_s) OVER (PARTITION BY slice_id, namespace, pod ORDER BY first_s, last_s
                             ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS previous_end
    FROM gpu_slice_intervals
),
islands AS (
    SELECT *,
           sum(CASE WHEN previous_end IS NULL OR first_s > previous_end THEN 1 ELSE 0 END)
               OVER (PARTITION BY slice_id, namespace, pod ORDER BY first_s, last_s) AS island
    FROM ordered
)
SELECT slice_id, namespace, pod,
       any_value(node) AS node,
       any_value(source) AS source,
       any_value(claim_name) AS claim_name,
       any_value(claim_namespace) AS claim_namespace,
       any_value(driver) AS driver,
       any_value(pool) AS pool,
       any_value(device) AS device,
       any_value(resource_name) AS resource_name,
       string_agg(DISTINCT container, ',' ORDER BY container) AS containers,
       greatest(min(first_s), (SELECT since_s FROM gpu_params)) AS start_s,
       least(max(last_s), (SELECT until_s FROM gpu_params)) AS end_s
FROM islands
GROUP BY slice_id, namespace, pod, island
HAVING least(max(last_s), (SELECT until_s FROM gpu_params)) > greatest(min(first_s), (SELECT since_s FROM gpu_params));

-- 3. Holder segments: a slice's timeline cut at every holding boundary; a segment held by n pods at once
-- (a shared device) gives each of them 1/n of its time.
CREATE OR REPLACE TEMP TABLE gpu_segments AS
WITH bounds AS (
    SELECT DISTINCT slice_id, t FROM (
        SELECT slice_id, start_s AS t FROM gpu_holdings
        UNION ALL
        SELECT slice_id, end_s FROM gpu_holdings
    )
),
pieces AS (
    SELECT slice_id, t AS seg_start, lead(t) OVER (PARTITION BY slice_id ORDER BY t) AS seg_end FROM bounds
)
SELECT p.slice_id, p.seg_start, p.seg_end, h.namespace, h.pod, h.node, h.source, h.claim_name, h.device,
       h.resource_name,
       count(*) OVER (PARTITION BY p.slice_id, p.seg_start) AS holders
FROM pieces AS p
JOIN gpu_holdings AS h ON h.slice_id = p.slice_id AND h.start_s <= p.seg_start AND h.end_s >= p.seg_end
WHERE p.seg_end > p.seg_start;

-- 4. DCGM samples, de-duplicated (a WAL replay after a crash may have written some twice), each covering
-- [t, next sample of its series), at most max_sample_s; a series' last sample covers its previous gap.
CREATE OR REPLACE TEMP TABLE gpu_samples AS
WITH distinct_samples AS (
    SELECT DISTINCT ON (time, metric, uuid, gpu_i_id, gpu, hostname, pod, namespace, container, dra_claim_name,
                        dra_claim_namespace, dra_device_name)
           epoch(time) AS t, metric, value, uuid, gpu_i_id, gpu, gpu_i_profile, dra_mig_profile, hostname, pod,
           namespace, container, dra_claim_name, dra_claim_namespace, dra_driver_name, dra_pool_name,
           dra_device_name,
           hash(metric, uuid, gpu_i_id, gpu, hostname, pod, namespace, container, dra_claim_name,
                dra_claim_namespace, dra_device_name) AS series
    FROM gpu_metrics
    WHERE metric IN ('DCGM_FI_PROF_GR_ENGINE_ACTIVE', 'DCGM_FI_DEV_GPU_UTIL')
),
timed AS (
    SELECT *,
           lead(t) OVER (PARTITION BY series ORDER BY t) - t AS gap_after,
           t - lag(t) OVER (PARTITION BY series ORDER BY t) AS gap_before
    FROM distinct_samples
)
SELECT *,
       t + least(coalesce(gap_after, gap_before, (SELECT max_sample_s FROM gpu_params)),
                 (SELECT max_sample_s FROM gpu_params)) AS t_end,
       -- busy fraction of the sample window: GR_ENGINE_ACTIVE is 0..1, GPU_UTIL is a percentage
       CASE WHEN metric = 'DCGM_FI_DEV_GPU_UTIL' THEN value / 100.0 ELSE value END AS busy_fraction
FROM timed;

-- 5. Samples -> slices: by the DRA labels (claim + device), else by pod / namespace (container when both
-- carry one), and only while a holding of that pod or claim is open.
CREATE OR REPLACE TEMP TABLE gpu_sample_slices AS
SELECT DISTINCT s.series, s.metric, s.t, s.t_end, s.busy_fraction, s.gpu_i_id,
       coalesce(s.dra_mig_profile, s.gpu_i_profile) AS profile, h.slice_id
FROM gpu_samples AS s
JOIN gpu_holdings AS h
  ON s.dra_device_name = h.device
 AND coalesce(s.dra_claim_name = h.claim_name, true)
 AND coalesce(s.dra_claim_namespace = h.claim_namespace, true)
 AND coalesce(s.dra_pool_name = h.pool, true)
 AND coalesce(s.dra_driver_name = h.driver, true)
 AND s.t < h.end_s AND s.t_end > h.start_s
UNION
SELECT DISTINCT s.series, s.metric, s.t, s.t_end, s.busy_fraction, s.gpu_i_id,
       coalesce(s.dra_mig_profile, s.gpu_i_profile) AS profile, h.slice_id
FROM gpu_samples AS s
JOIN gpu_holdings AS h
  ON s.dra_device_name IS NULL
 AND s.pod = h.pod
 AND coalesce(s.namespace = h.namespace, true)
 AND coalesce(list_contains(string_split(h.containers, ','), s.container), true)
 AND s.t < h.end_s AND s.t_end > h.start_s;

-- 6. One activity series per slice: GR_ENGINE_ACTIVE (works on MIG) first; GPU_UTIL only for a whole GPU
-- (it reads 0 on MIG instances); the series with most samples wins, ties by series hash.
CREATE OR REPLACE TEMP TABLE gpu_slice_series AS
SELECT slice_id,
       arg_min(series, (rank, -samples, series)) AS series,
       arg_min(metric, (rank, -samples, series)) AS metric
FROM (
    SELECT slice_id, series, metric, count(*) AS samples,
           CASE WHEN metric = 'DCGM_FI_PROF_GR_ENGINE_ACTIVE' THEN 0 ELSE 1 END AS rank
    FROM gpu_sample_slices
    WHERE metric = 'DCGM_FI_PROF_GR_ENGINE_ACTIVE' OR gpu_i_id IS NULL
    GROUP BY slice_id, series, metric
)
GROUP BY slice_id;

-- 7. Slices with their MIG profile (from the metrics' labels, the device-plugin resource name or the DRA
-- device name) and their activity source.
CREATE OR REPLACE TEMP TABLE gpu_slices AS
WITH labelled AS (
    SELECT slice_id, any_value(profile) AS profile FROM gpu_sample_slices WHERE profile IS NOT NULL GROUP BY slice_id
),
named AS (
    SELECT slice_id, any_value(node) AS node, any_value(source) AS alloc_source,
           any_value(resource_name) AS resource_name, any_value(device) AS device
    FROM gpu_holdings GROUP BY slice_id
)
SELECT n.slice_id, n.node, n.alloc_source, n.resource_name, n.device,
       coalesce(
           l.profile,
           nullif(regexp_extract(n.resource_name, 'mig-(\d+g\.\d+gb)', 1), ''),
           nullif(regexp_replace(regexp_extract(n.device, '(\d+g)\.?(\d+gb)', 0), '(\d+g)\.?(\d+gb)', '\1.\2'), ''),
           'gpu'
       ) AS profile,
       CASE ss.metric WHEN 'DCGM_FI_PROF_GR_ENGINE_ACTIVE' THEN 'dcgm'
                      WHEN 'DCGM_FI_DEV_GPU_UTIL' THEN 'dcgm_gpu_util'
                      ELSE 'spans' END AS activity_source,
       ss.series
FROM named AS n
LEFT JOIN labelled AS l USING (slice_id)
LEFT JOIN gpu_slice_series AS ss USING (slice_id);

-- 8. Inference spans on pods that hold slices (the busy estimate without metrics, and the attribution).
CREATE OR REPLACE TEMP TABLE gpu_pod_spans AS
SELECT s.trace_id, s.span_id, s.k8s_namespace, s.k8s_pod, s.agent_name,
       epoch(s.start_time) AS t0, epoch(s.end_time) AS t1
FROM spans AS s
WHERE s.category IN ('llm', 'embedding')
  AND s.k8s_pod IN (SELECT DISTINCT pod FROM gpu_holdings)
  AND s.end_time > s.start_time;

-- the union of a pod's inference span intervals (overlapping calls count once)
CREATE OR REPLACE TEMP TABLE gpu_pod_busy AS
WITH ordered AS (
    SELECT k8s_namespace, k8s_pod, t0, t1,
           max(t1) OVER (PARTITION BY k8s_namespace, k8s_pod ORDER BY t0, t1
                         ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS previous_end
    FROM gpu_pod_spans
),
islands AS (
    SELECT *, sum(CASE WHEN previous_end IS NULL OR t0 > previous_end THEN 1 ELSE 0 END)
                  OVER (PARTITION BY k8s_namespace, k8s_pod ORDER BY t0, t1) AS island
    FROM ordered
)
SELECT k8s_namespace, k8s_pod, min(t0) AS t0, max(t1) AS t1
FROM islands GROUP BY k8s_namespace, k8s_pod, island;

-- 9. Activity pieces per holder segment: the chosen DCGM series' sample windows (busy = fraction x time),
-- or, for a slice without metrics, the pod's busy span intervals (busy = the covered time). A segment held
-- by n pods gives each 1/n of the device's busy time (DCGM) or its own spans' time, at most 1/n.
CREATE OR REPLACE TEMP TABLE gpu_activity_pieces AS
SELECT g.slice_id, g.namespace, g.pod, g.seg_start,
       greatest(s.t, g.seg_start) AS w0, least(s.t_end, g.seg_end) AS w1,
       s.busy_fraction / g.holders AS weight
FROM gpu_segments AS g
JOIN gpu_slices AS sl ON sl.slice_id = g.slice_id AND sl.series IS NOT NULL
JOIN gpu_samples AS s ON s.series = sl.series AND s.t < g.seg_end AND s.t_end > g.seg_start
UNION ALL
SELECT g.slice_id, g.namespace, g.pod, g.seg_start,
       greatest(b.t0, g.seg_start) AS w0, least(b.t1, g.seg_end) AS w1,
       least(1.0, (g.seg_end - g.seg_start) / g.holders
                  / nullif(sum(least(b.t1, g.seg_end) - greatest(b.t0, g.seg_start))
                           OVER (PARTITION BY g.slice_id, g.namespace, g.pod, g.seg_start), 0)) AS weight
FROM gpu_segments AS g
JOIN gpu_slices AS sl ON sl.slice_id = g.slice_id AND sl.series IS NULL
JOIN gpu_pod_busy AS b
  ON b.k8s_pod = g.pod AND coalesce(b.k8s_namespace = g.namespace, true)
 AND b.t0 < g.seg_end AND b.t1 > g.seg_start;

-- 10. Busy time of each piece shared by the inference spans overlapping it, in proportion to their overlap
-- (joined through time buckets of bucket_s: a pair meets in the bucket where their overlap starts).
CREATE OR REPLACE TEMP TABLE gpu_span_busy AS
WITH piece_buckets AS (
    SELECT *, (w1 - w0) * weight AS busy_s,
           unnest(range(floor(w0 / (SELECT bucket_s FROM gpu_params))::BIGINT,
                        floor(w1 / (SELECT bucket_s FROM gpu_params))::BIGINT + 1)) AS bucket
    FROM gpu_activity_pieces
    WHERE w1 > w0 AND weight > 0
),
span_buckets AS (
    SELECT *, unnest(range(floor(t0 / (SELECT bucket_s FROM gpu_params))::BIGINT,
                           floor(t1 / (SELECT bucket_s FROM gpu_params))::BIGINT + 1)) AS bucket
    FROM gpu_pod_spans
),
pairs AS (
    SELECT p.slice_id, p.namespace, p.pod, p.seg_start, p.w0, p.busy_s, s.trace_id, s.span_id,
           least(s.t1, p.w1) - greatest(s.t0, p.w0) AS covered
    FROM piece_buckets AS p
    JOIN span_buckets AS s
      ON s.k8s_pod = p.pod AND s.bucket = p.bucket AND coalesce(s.k8s_namespace = p.namespace, true)
    WHERE s.t0 < p.w1 AND s.t1 > p.w0
      AND p.bucket = floor(greatest(s.t0, p.w0) / (SELECT bucket_s FROM gpu_params))::BIGINT
)
SELECT slice_id, namespace, pod, seg_start, trace_id, span_id,
       sum(busy_s * covered / piece_covered) AS busy_s
FROM (SELECT *, sum(covered) OVER (PARTITION BY slice_id, namespace, pod, seg_start, w0) AS piece_covered FROM pairs)
GROUP BY slice_id, namespace, pod, seg_start, trace_id, span_id;

-- 11. The facts every grouping sums: per holder segment its allocated and busy seconds, split over the
-- spans that used it (allocated time in proportion to their busy share) and a remainder with no span.
CREATE OR REPLACE TEMP TABLE gpu_usage AS
WITH segment_busy AS (
    SELECT slice_id, namespace, pod, seg_start, sum((w1 - w0) * weight) AS busy_s
    FROM gpu_activity_pieces WHERE w1 > w0
    GROUP BY slice_id, namespace, pod, seg_start
),
segments AS (
    SELECT g.slice_id, g.namespace, g.pod, g.node, g.seg_start,
           (g.seg_end - g.seg_start) / g.holders AS allocated_s,
           coalesce(b.busy_s, 0) AS busy_s
    FROM gpu_segments AS g
    LEFT JOIN segment_busy AS b USING (slice_id, namespace, pod, seg_start)
),
attributed AS (
    SELECT slice_id, namespace, pod, seg_start, sum(busy_s) AS busy_s
    FROM gpu_span_busy GROUP BY slice_id, namespace, pod, seg_start
)
SELECT g.slice_id, g.node, g.namespace, g.pod, sp.trace_id, sp.span_id,
       g.allocated_s * sp.busy_s / g.busy_s AS allocated_s,
       sp.busy_s
FROM segments AS g
JOIN gpu_span_busy AS sp USING (slice_id, namespace, pod, seg_start)
WHERE g.busy_s > 0
UNION ALL
SELECT g.slice_id, g.node, g.namespace, g.pod, NULL, NULL,
       CASE WHEN g.busy_s > 0 THEN g.allocated_s * (g.busy_s - coalesce(a.busy_s, 0)) / g.busy_s
            ELSE g.allocated_s END,
       g.busy_s - coalesce(a.busy_s, 0)
FROM segments AS g
LEFT JOIN attributed AS a USING (slice_id, namespace, pod, seg_start);
