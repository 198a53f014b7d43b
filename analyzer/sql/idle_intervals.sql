-- Each group's run starts and ends, each list ascending, for the scale-down (1..N) analysis.
SELECT grp, list(start_ns ORDER BY start_ns) AS starts_ns, list(end_ns ORDER BY end_ns) AS ends_ns
FROM idle_runs
GROUP BY grp;
