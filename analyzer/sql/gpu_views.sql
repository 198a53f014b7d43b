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

-- 4. DCGM series (one metric of one GPU identity) and their samples, de-duplicated (a WAL replay after a
-- crash may have written some twice). A sample covers [t, next sample of its series), at most max_sample_s;
-- a series' last sample covers its previous gap.
CREATE OR REPLACE TEMP TABLE gpu_series AS
SELECT hash(metric, uuid, gpu_i_id, gpu, hostname, pod, namespace, container, dra_claim_name,
            dra_claim_namespace, dra_device_name) AS series,
       metric, uuid, gpu_i_id, gpu, hostname, pod, namespace, container, dra_claim_name, dra_claim_namespace,
       dra_device_name,
       any_value(dra_driver_name) AS dra_driver_name,
       any_value(dra_pool_name) AS dra_pool_name,
       any_value(coalesce(dra_mig_profile, gpu_i_profile)) AS profile
FROM gpu_metrics
WHERE metric IN ('DCGM_FI_PROF_GR_ENGINE_ACTIVE', 'DCGM_FI_DEV_GPU_UTIL')
GROUP BY ALL;

CREATE OR REPLACE TEMP TABLE gpu_samples AS
WITH distinct_samples AS (
    SELECT DISTINCT ON (series, t) series, t, value, metric
    FROM (
        SELECT hash(metric, uuid, gpu_i_id, gpu, hostname, pod, namespace, container, dra_claim_name,
                    dra_claim_namespace, dra_device_name) AS series,
               epoch(time) AS t, value, metric
        FROM gpu_metrics
        WHERE metric IN ('DCGM_FI_PROF_GR_ENGINE_ACTIVE', 'DCGM_FI_DEV_GPU_UTIL')
    )
),
timed AS (
    SELECT *,
           lead(t) OVER w - t AS gap_after,
           t - lag(t) OVER w AS gap_before
    FROM distinct_samples
    WINDOW w AS (PARTITION BY series ORDER BY t)
)
SELECT series, t,
       t + least(coalesce(gap_after, gap_before, (SELECT max_sample_s FROM gpu_params)),
                 (SELECT max_sample_s FROM gpu_params)) AS t_end,
       -- busy fraction of the sample window: GR_ENGINE_ACTIVE is 0..1, GPU_UTIL is a percentage
       CASE WHEN metric = 'DCGM_FI_DEV_GPU_UTIL' THEN value / 100.0 ELSE value END AS busy_fraction
FROM timed;

-- 5. Series -> holdings by their labels: the DRA labels (claim + device), else pod / namespace (container
-- when both carry one). Samples count for a slice only while the holding is open (step 9).
CREATE OR REPLACE TEMP TABLE gpu_series_holdings AS
SELECT s.series, s.metric, s.gpu_i_id, s.profile, h.slice_id, h.start_s, h.end_s
FROM gpu_series AS s
JOIN gpu_holdings AS h
  ON s.dra_device_name = h.device
 AND coalesce(s.dra_claim_name = h.claim_name, true)
 AND coalesce(s.dra_claim_namespace = h.claim_namespace, true)
 AND coalesce(s.dra_pool_name = h.pool, true)
 AND coalesce(s.dra_driver_name = h.driver, true)
UNION ALL
SELECT s.series, s.metric, s.gpu_i_id, s.profile, h.slice_id, h.start_s, h.end_s
FROM gpu_series AS s
JOIN gpu_holdings AS h
  ON s.dra_device_name IS NULL
 AND s.pod = h.pod
 AND coalesce(s.namespace = h.namespace, true)
 AND coalesce(list_contains(string_split(h.containers, ','), s.container), true);

-- 6. One activity series per slice: GR_ENGINE_ACTIVE (works on MIG) first; GPU_UTIL only for a whole GPU
-- (it reads 0 on MIG instances); the series with most samples inside the holdings wins, ties by hash.
CREATE OR REPLACE TEMP TABLE gpu_slice_series AS
SELECT slice_id,
       arg_min(series, (rank, -samples, series)) AS series,
       arg_min(metric, (rank, -samples, series)) AS metric
FROM (
    SELECT sh.slice_id, sh.series, any_value(sh.metric) AS metric, count(*) AS samples,
           CASE WHEN any_value(sh.metric) = 'DCGM_FI_PROF_GR_ENGINE_ACTIVE' THEN 0 ELSE 1 END AS rank
    FROM gpu_series_holdings AS sh
    JOIN gpu_samples AS x ON x.series = sh.series AND x.t < sh.end_s AND x.t_end > sh.start_s
    WHERE sh.metric = 'DCGM_FI_PROF_GR_ENGINE_ACTIVE' OR sh.gpu_i_id IS NULL
    GROUP BY sh.slice_id, sh.series
)
GROUP BY slice_id;

-- 7. Slices with their MIG profile (from the metrics' labels, the device-plugin resource name or the DRA
-- device name) and their activity source.
CREATE OR REPLACE TEMP TABLE gpu_slices AS
WITH labelled AS (
    SELECT slice_id, any_value(profile) AS profile FROM gpu_series_holdings WHERE profile IS NOT NULL GROUP BY slice_id
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

-- 8. Without metrics, the busy estimate of a slice is the union of the inference (LLM, embedding) span
-- intervals on its pod (overlapping calls count once).
CREATE OR REPLACE TEMP TABLE gpu_pod_busy AS
WITH spans_on_pods AS (
    SELECT k8s_namespace, k8s_pod, epoch(start_time) AS t0, epoch(end_time) AS t1
    FROM spans
    WHERE category IN ('llm', 'embedding')
      AND end_time > start_time
      AND k8s_pod IN (SELECT h.pod FROM gpu_holdings AS h JOIN gpu_slices AS s USING (slice_id) WHERE s.series IS NULL)
),
ordered AS (
    SELECT *,
           max(t1) OVER (PARTITION BY k8s_namespace, k8s_pod ORDER BY t0, t1
                         ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS previous_end
    FROM spans_on_pods
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
WHERE s.busy_fraction > 0  -- idle samples add nothing: most of a bursty month
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

-- 10. Allocated and busy seconds per holder segment: what the slice / node / namespace / pod groupings sum.
-- analyzer/sql/gpu_attribution.sql replaces gpu_usage with the same rows split over the spans that used them.
CREATE OR REPLACE TEMP TABLE gpu_segment_usage AS
WITH segment_busy AS (
    SELECT slice_id, namespace, pod, seg_start, sum((w1 - w0) * weight) AS busy_s
    FROM gpu_activity_pieces WHERE w1 > w0
    GROUP BY slice_id, namespace, pod, seg_start
)
SELECT g.slice_id, g.namespace, g.pod, g.node, g.seg_start,
       (g.seg_end - g.seg_start) / g.holders AS allocated_s,
       coalesce(b.busy_s, 0) AS busy_s
FROM gpu_segments AS g
LEFT JOIN segment_busy AS b USING (slice_id, namespace, pod, seg_start);

CREATE OR REPLACE TEMP VIEW gpu_usage AS
SELECT slice_id, node, namespace, pod, NULL::BLOB AS trace_id, NULL::BLOB AS span_id, NULL::VARCHAR AS agent_name,
       allocated_s, busy_s
FROM gpu_segment_usage;
