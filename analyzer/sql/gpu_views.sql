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
       any_value(device_id) AS device_id,
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

-- 4. DCGM series (one metric of one GPU identity, as dcgm-exporter labels it) and their samples,
-- de-duplicated (a WAL replay after a crash may have written some twice). A sample covers [t, next sample of
-- its series), at most max_sample_s; a series' last sample covers its previous gap.
-- `mig_row`: a MIG GPU instance's own row (GPU_I_ID set). `parent_of_mig_claim`: a whole-GPU row that
-- dcgm-exporter copied for a DRA claim of one of its MIG devices (dra_mig_* labels): the parent GPU's
-- activity, never a slice's (see step 5).
CREATE OR REPLACE TEMP TABLE gpu_series AS
SELECT hash(metric, uuid, gpu_i_id, gpu, hostname, pod, namespace, container, dra_claim_name,
            dra_claim_namespace, dra_device_name) AS series,
       metric, uuid, gpu_i_id, gpu, hostname, pod, namespace, container, dra_claim_name, dra_claim_namespace,
       dra_device_name,
       gpu_i_id IS NOT NULL AS mig_row,
       any_value(dra_driver_name) AS dra_driver_name,
       any_value(dra_pool_name) AS dra_pool_name,
       any_value(gpu_i_profile) AS gpu_i_profile,
       any_value(dra_mig_profile) AS dra_mig_profile,
       bool_or(gpu_i_id IS NULL AND (dra_mig_profile IS NOT NULL OR labels['dra_mig_device_uuid'] IS NOT NULL))
           AS parent_of_mig_claim,
       any_value(labels['device']) AS device_label
FROM gpu_metrics
WHERE metric IN ('DCGM_FI_PROF_GR_ENGINE_ACTIVE', 'DCGM_FI_DEV_GPU_UTIL')
GROUP BY ALL;

CREATE OR REPLACE TEMP TABLE gpu_series_samples AS
SELECT DISTINCT
       hash(metric, uuid, gpu_i_id, gpu, hostname, pod, namespace, container, dra_claim_name,
            dra_claim_namespace, dra_device_name) AS series,
       epoch(time) AS t,
       -- busy fraction of the sample window: GR_ENGINE_ACTIVE is 0..1, GPU_UTIL is a percentage
       CASE WHEN metric = 'DCGM_FI_DEV_GPU_UTIL' THEN value / 100.0 ELSE value END AS busy_fraction
FROM gpu_metrics
WHERE metric IN ('DCGM_FI_PROF_GR_ENGINE_ACTIVE', 'DCGM_FI_DEV_GPU_UTIL');

-- 5. Series -> slices, the way dcgm-exporter labels its rows (github.com/NVIDIA/dcgm-exporter at d5e5f51,
-- internal/pkg/transformation/kubernetes.go `Process`, dra.go `GetDeviceInfo`, collector/types.go
-- `GetIDOfType`; emulated in collector_ext/demo/dcgm_exporter.py):
--   a. a whole-GPU row copied for a DRA claim of that GPU (dra_device_name, no dra_mig_* label) is the
--      claimed device's activity: the slice of that pool/device;
--   b. a whole-GPU row copied for a DRA claim of one of its MIG devices (dra_mig_* labels) is the PARENT
--      GPU's activity, repeated once per claim: it is credited to no slice; it tells which parent GPU (UUID)
--      and MIG profile the claimed device has;
--   c. dcgm-exporter looks a MIG row up as `<gpu>-<GPU_I_ID>` among claims keyed by parent UUID, so MIG rows
--      carry no DRA labels: a MIG row of that parent and profile is the DRA MIG slice's activity when it is
--      unambiguous, i.e. the parent has one GPU instance of that profile in the metrics and one claimed
--      device of it; NVIDIA's DRA driver names MIG devices by profile and placement, which nothing ties to
--      a GPU instance id (k8s-dra-driver-gpu cmd/gpu-kubelet-plugin/mig.go), so otherwise the slice falls back
--      to its spans (step 8). A MIG row that does carry DRA labels (a newer exporter) joins by them;
--   d. device plugins (`toDeviceToPod`): a whole-GPU row is the device-plugin device whose id is its UUID
--      (or its `device`, nvidia<N>, with --kubernetes-gpu-id-type device-name); a MIG row carries the pod of
--      the device-plugin MIG device (`MIG-<uuid>` ids): the pod's MIG slice of the row's profile.
-- A series credited to more than one slice is ambiguous and credited to none: a GPU's activity is never
-- counted for several slices. Samples count for a slice only while the holding is open (step 9).
CREATE OR REPLACE TEMP TABLE gpu_series_slices AS
WITH slices AS (
    SELECT slice_id, any_value(source) AS source, any_value(driver) AS driver, any_value(pool) AS pool,
           any_value(device) AS device, any_value(resource_name) AS resource_name,
           any_value(device_id) AS device_id,
           -- a device-plugin MIG device: an id MIG-<uuid> or a resource nvidia.com/mig-<profile>
           any_value(source = 'device_plugin' AND (device_id LIKE 'MIG-%' OR resource_name LIKE '%/mig-%'))
               AS plugin_mig,
           nullif(regexp_extract(any_value(resource_name), 'mig-(\d+g\.\d+gb)', 1), '') AS plugin_profile
    FROM gpu_holdings
    GROUP BY slice_id
),
dra_labelled AS (  -- a. (and c. for MIG rows labelled by a newer exporter)
    SELECT s.series, sl.slice_id
    FROM gpu_series AS s
    JOIN slices AS sl
      ON sl.source = 'dra' AND s.dra_device_name = sl.device
     AND coalesce(s.dra_pool_name = sl.pool, true) AND coalesce(s.dra_driver_name = sl.driver, true)
    WHERE NOT s.parent_of_mig_claim
),
mig_claims AS (  -- b.: each DRA MIG slice's parent GPU and profile
    SELECT DISTINCT sl.slice_id, s.uuid AS parent_uuid, s.dra_mig_profile AS profile
    FROM gpu_series AS s
    JOIN slices AS sl
      ON sl.source = 'dra' AND s.dra_device_name = sl.device
     AND coalesce(s.dra_pool_name = sl.pool, true) AND coalesce(s.dra_driver_name = sl.driver, true)
    WHERE s.parent_of_mig_claim AND s.uuid IS NOT NULL AND s.dra_mig_profile IS NOT NULL
),
mig_rows AS (
    SELECT series, uuid, gpu_i_id, gpu_i_profile,
           count(DISTINCT gpu_i_id) OVER (PARTITION BY uuid, gpu_i_profile) AS instances_of_profile
    FROM gpu_series
    WHERE mig_row AND dra_device_name IS NULL
),
mig_matched AS (  -- c.
    SELECT m.series, c.slice_id
    FROM mig_rows AS m
    JOIN (SELECT *, count(*) OVER (PARTITION BY parent_uuid, profile) AS claimed_devices FROM mig_claims) AS c
      ON m.uuid = c.parent_uuid AND m.gpu_i_profile = c.profile
    WHERE m.instances_of_profile = 1 AND c.claimed_devices = 1
),
plugin_whole AS (  -- d., whole GPUs
    SELECT s.series, sl.slice_id
    FROM gpu_series AS s
    JOIN slices AS sl
      ON sl.source = 'device_plugin' AND NOT sl.plugin_mig AND sl.device_id IN (s.uuid, s.device_label)
    WHERE NOT s.mig_row AND s.dra_device_name IS NULL
),
plugin_mig AS (  -- d., MIG devices: by the row's pod labels and profile
    SELECT DISTINCT s.series, h.slice_id
    FROM gpu_series AS s
    JOIN gpu_holdings AS h
      ON s.pod = h.pod AND coalesce(s.namespace = h.namespace, true)
     AND coalesce(list_contains(string_split(h.containers, ','), s.container), true)
    JOIN slices AS sl ON sl.slice_id = h.slice_id AND sl.plugin_mig
    WHERE s.mig_row AND s.dra_device_name IS NULL AND coalesce(sl.plugin_profile = s.gpu_i_profile, true)
),
candidates AS (
    SELECT * FROM dra_labelled
    UNION SELECT * FROM mig_matched
    UNION SELECT * FROM plugin_whole
    UNION SELECT * FROM plugin_mig
)
SELECT series, any_value(slice_id) AS slice_id
FROM candidates
GROUP BY series
HAVING count(DISTINCT slice_id) = 1;

CREATE OR REPLACE TEMP TABLE gpu_mig_claim_profiles AS
SELECT slice_id, any_value(profile) AS profile
FROM (
    SELECT DISTINCT sl.slice_id, s.dra_mig_profile AS profile
    FROM gpu_series AS s
    JOIN gpu_holdings AS sl
      ON sl.source = 'dra' AND s.dra_device_name = sl.device AND coalesce(s.dra_pool_name = sl.pool, true)
    WHERE s.dra_mig_profile IS NOT NULL
)
GROUP BY slice_id;

CREATE OR REPLACE TEMP TABLE gpu_series_holdings AS
SELECT s.series, s.metric, s.gpu_i_id, coalesce(s.gpu_i_profile, s.dra_mig_profile) AS profile, h.slice_id,
       h.start_s, h.end_s
FROM gpu_series_slices AS ss
JOIN gpu_series AS s USING (series)
JOIN gpu_holdings AS h ON h.slice_id = ss.slice_id;

-- 6. One activity metric per slice: GR_ENGINE_ACTIVE (works on MIG) first; GPU_UTIL only for a whole GPU
-- (it reads 0 on MIG instances); then the slice's samples: those of every series of that metric credited to
-- it, one per time (the copies dcgm-exporter makes of one row, one per claim and pod, carry one value).
-- A sample covers [t, the slice's next sample), at most max_sample_s; the last one covers its previous gap.
CREATE OR REPLACE TEMP TABLE gpu_slice_metric AS
SELECT slice_id, arg_min(metric, (rank, -samples, metric)) AS metric
FROM (
    SELECT sh.slice_id, sh.metric, count(*) AS samples,
           CASE WHEN sh.metric = 'DCGM_FI_PROF_GR_ENGINE_ACTIVE' THEN 0 ELSE 1 END AS rank
    FROM gpu_series_holdings AS sh
    JOIN gpu_series_samples AS x ON x.series = sh.series AND x.t >= sh.start_s AND x.t < sh.end_s
    WHERE sh.metric = 'DCGM_FI_PROF_GR_ENGINE_ACTIVE' OR sh.gpu_i_id IS NULL
    GROUP BY sh.slice_id, sh.metric
)
GROUP BY slice_id;

CREATE OR REPLACE TEMP TABLE gpu_slice_samples AS
WITH merged AS (
    SELECT ss.slice_id, x.t, max(x.busy_fraction) AS busy_fraction
    FROM gpu_slice_metric AS m
    JOIN gpu_series_slices AS ss USING (slice_id)
    JOIN gpu_series AS s ON s.series = ss.series AND s.metric = m.metric
    JOIN gpu_series_samples AS x ON x.series = ss.series
    GROUP BY ss.slice_id, x.t
),
timed AS (
    SELECT *, lead(t) OVER w - t AS gap_after, t - lag(t) OVER w AS gap_before
    FROM merged
    WINDOW w AS (PARTITION BY slice_id ORDER BY t)
)
SELECT slice_id, t,
       t + least(coalesce(gap_after, gap_before, (SELECT max_sample_s FROM gpu_params)),
                 (SELECT max_sample_s FROM gpu_params)) AS t_end,
       busy_fraction
FROM timed;

-- 7. Slices with their MIG profile (from the metrics' labels, the device-plugin resource name or the DRA
-- device name) and their activity source.
CREATE OR REPLACE TEMP TABLE gpu_slices AS
WITH labelled AS (
    SELECT slice_id, any_value(profile) AS profile
    FROM (
        SELECT slice_id, profile FROM gpu_series_holdings WHERE profile IS NOT NULL
        UNION ALL
        SELECT slice_id, profile FROM gpu_mig_claim_profiles
    )
    GROUP BY slice_id
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
       CASE m.metric WHEN 'DCGM_FI_PROF_GR_ENGINE_ACTIVE' THEN 'dcgm'
                     WHEN 'DCGM_FI_DEV_GPU_UTIL' THEN 'dcgm_gpu_util'
                     ELSE 'spans' END AS activity_source
FROM named AS n
LEFT JOIN labelled AS l USING (slice_id)
LEFT JOIN gpu_slice_metric AS m USING (slice_id);

-- 8. Without metrics, the busy estimate of a slice is the union of the inference (LLM, embedding) span
-- intervals on its pod (overlapping calls count once).
CREATE OR REPLACE TEMP TABLE gpu_pod_busy AS
WITH spans_on_pods AS (
    SELECT k8s_namespace, k8s_pod, epoch(start_time) AS t0, epoch(end_time) AS t1
    FROM spans
    WHERE category IN ('llm', 'embedding')
      AND end_time > start_time
      AND k8s_pod IN (
          SELECT h.pod FROM gpu_holdings AS h JOIN gpu_slices AS s USING (slice_id) WHERE s.activity_source = 'spans'
      )
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

-- 9. Activity pieces per holder segment: the slice's DCGM sample windows (busy = fraction x time),
-- or, for a slice without metrics, the pod's busy span intervals (busy = the covered time). A segment held
-- by n pods gives each 1/n of the device's busy time (DCGM) or its own spans' time, at most 1/n.
CREATE OR REPLACE TEMP TABLE gpu_activity_pieces AS
SELECT g.slice_id, g.namespace, g.pod, g.seg_start,
       greatest(s.t, g.seg_start) AS w0, least(s.t_end, g.seg_end) AS w1,
       s.busy_fraction / g.holders AS weight
FROM gpu_segments AS g
JOIN gpu_slice_samples AS s ON s.slice_id = g.slice_id AND s.t < g.seg_end AND s.t_end > g.seg_start
WHERE s.busy_fraction > 0  -- idle samples add nothing: most of a bursty month
UNION ALL
SELECT g.slice_id, g.namespace, g.pod, g.seg_start,
       greatest(b.t0, g.seg_start) AS w0, least(b.t1, g.seg_end) AS w1,
       least(1.0, (g.seg_end - g.seg_start) / g.holders
                  / nullif(sum(least(b.t1, g.seg_end) - greatest(b.t0, g.seg_start))
                           OVER (PARTITION BY g.slice_id, g.namespace, g.pod, g.seg_start), 0)) AS weight
FROM gpu_segments AS g
JOIN gpu_slices AS sl ON sl.slice_id = g.slice_id AND sl.activity_source = 'spans'
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
