-- Each group's arrival times (ns, ascending) for the warm-pool replay.
SELECT grp, list(start_ns ORDER BY start_ns) AS arrivals_ns
FROM idle_runs
GROUP BY grp;
