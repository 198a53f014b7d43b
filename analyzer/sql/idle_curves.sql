-- For each group and each threshold t of $grid (seconds): how many idle gaps are longer than t
-- (survival P(gap > t) = n_longer / n_gaps; with cooldownPeriod t those arrivals start cold) and the
-- idle pod-seconds a pool kept warm for t after going idle spends: sum of min(gap, t).
SELECT g.grp, grid.t AS t_s,
       count(*) AS n_gaps,
       count(*) FILTER (WHERE g.gap_s > grid.t) AS n_longer,
       sum(least(g.gap_s, grid.t)) AS idle_s
FROM idle_gaps AS g
CROSS JOIN (SELECT unnest($grid::DOUBLE[]) AS t) AS grid
GROUP BY g.grp, grid.t
ORDER BY g.grp, grid.t;
