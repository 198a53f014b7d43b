-- `analyze cost`: the figures (analyzer/figures.py) per group of `charges` rows. The group keys (k0, k1, ...),
-- the task join, filters, figures and order are filled in by analyzer/cost.py from fixed whitelists (never
-- user text); every value, label keys included, is a bound parameter.
WITH grouped AS (
    SELECT {keys},
           {figures}
    FROM charges AS c
    {task_join}
    WHERE ($since::TIMESTAMPTZ IS NULL OR c.start_time >= $since::TIMESTAMPTZ)
      AND ($until::TIMESTAMPTZ IS NULL OR c.start_time < $until::TIMESTAMPTZ){filters}
    GROUP BY ALL
),
kept AS (  -- with $top: the most expensive groups (unknown cost last), then in the order asked
    SELECT * FROM grouped
    ORDER BY total_cost_usd DESC NULLS LAST, {key_names}
    LIMIT $top
)
SELECT * FROM kept
ORDER BY {order};
