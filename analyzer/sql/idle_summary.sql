-- Per group: arrivals, the observed window, idle-gap percentiles (linear interpolation), and the
-- concurrency over time: runs are half-open intervals [start, end); between two consecutive event times
-- the level is the number of runs open. busy_fraction is the share of [first start, last end] with a run
-- open; p99_concurrency is time-weighted over that busy time (the level not exceeded 99 % of it).
WITH per_level AS (
    -- time spent at each level (idle_levels: analyzer/idle.py computes it from idle_runs); few rows per
    -- group, so the cumulative sums below sort little
    SELECT grp, level, level_ns FROM idle_levels
),
cumulative AS (
    SELECT grp, level, level_ns,
           sum(level_ns) OVER (PARTITION BY grp) AS total_ns,
           sum(level_ns) FILTER (WHERE level > 0) OVER (PARTITION BY grp) AS busy_ns,
           sum(level_ns) FILTER (WHERE level > 0) OVER (PARTITION BY grp ORDER BY level) AS busy_cumulative_ns
    FROM per_level
),
concurrency AS (
    SELECT grp,
           max(level) AS peak_concurrency,
           min(level) FILTER (WHERE level > 0 AND busy_cumulative_ns >= 0.99 * busy_ns) AS p99_concurrency,
           sum(level_ns) FILTER (WHERE level > 0) / any_value(total_ns) AS busy_fraction
    FROM cumulative
    GROUP BY grp
),
runs AS (
    SELECT grp, count(*) AS arrivals, min(start_ns) AS first_start_ns, max(start_ns) AS last_start_ns,
           max(end_ns) AS last_end_ns, median((end_ns - start_ns) / 1e9) AS p50_duration_s
    FROM idle_runs
    GROUP BY grp
),
gaps AS (
    SELECT grp,
           quantile_cont(gap_s, 0.5) AS p50_gap_s,
           quantile_cont(gap_s, 0.9) AS p90_gap_s,
           quantile_cont(gap_s, 0.99) AS p99_gap_s
    FROM idle_gaps
    GROUP BY grp
)
SELECT r.grp, r.arrivals, r.first_start_ns, r.last_start_ns, r.last_end_ns, r.p50_duration_s,
       g.p50_gap_s, g.p90_gap_s, g.p99_gap_s,
       coalesce(c.busy_fraction, 0.0) AS busy_fraction,
       coalesce(c.peak_concurrency, 0) AS peak_concurrency,
       coalesce(c.p99_concurrency, 0) AS p99_concurrency
FROM runs AS r
LEFT JOIN gaps AS g USING (grp)
LEFT JOIN concurrency AS c USING (grp)
ORDER BY r.arrivals DESC, r.grp;
