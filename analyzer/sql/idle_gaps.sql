-- One idle gap per arrival after a group's first: the time from the moment the group last went idle
-- (the latest end of every earlier run) to this arrival, or 0 when an earlier run is still in flight.
-- Arrivals at the same instant are ordered by end time; the second of two simultaneous arrivals has gap 0.
CREATE OR REPLACE TEMP TABLE idle_gaps AS
SELECT grp, start_ns, greatest(start_ns - idle_since_ns, 0) / 1e9 AS gap_s
FROM (
    SELECT grp, start_ns,
           max(end_ns) OVER (
               PARTITION BY grp ORDER BY start_ns, end_ns ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING
           ) AS idle_since_ns
    FROM idle_runs
)
WHERE idle_since_ns IS NOT NULL;
