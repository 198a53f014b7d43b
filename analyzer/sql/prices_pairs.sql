-- The distinct (provider, model) pairs whose usage counts: the only models the price table must resolve.
-- The model is the one the provider answered with (often dated), else the one requested.
-- A superset of the counted pairs, without paying for the dataset-wide exactly-once rule twice: the spans
-- the receiver counted (a filter the scan applies itself), plus the spans with usage of the traces the
-- analyzer recomputes (usage_covered: the rows of split traces, usually none).
SELECT coalesce(provider, '') AS provider, coalesce(response_model, request_model) AS model
FROM spans
WHERE usage_counted AND coalesce(response_model, request_model) IS NOT NULL
UNION
SELECT provider, model
FROM usage_covered
WHERE has_usage AND model IS NOT NULL
ORDER BY provider, model;
