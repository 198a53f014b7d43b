-- The distinct (provider, model) pairs of the dataset's calls, and whether any of its calls' usage counts
-- (`counted`: the only pairs the price table must price; the others, calls that reported no usage, are only
-- named: model_names). The model is the one the provider answered with (often dated), else the one requested.
-- A superset of the counted pairs, without paying for the dataset-wide exactly-once rule twice: the spans
-- the receiver counted (a filter the scan applies itself), plus the spans with usage of the traces the
-- analyzer recomputes (usage_covered: the rows of split traces, usually none).
SELECT provider, model, bool_or(counted) AS counted
FROM (
    SELECT coalesce(provider, '') AS provider, coalesce(response_model, request_model) AS model,
           coalesce(usage_counted, false) AS counted
    FROM spans
    WHERE (usage_counted OR category IN ('llm', 'embedding'))
      AND coalesce(response_model, request_model) IS NOT NULL
    UNION ALL
    SELECT provider, model, true
    FROM usage_covered
    WHERE has_usage AND model IS NOT NULL
)
GROUP BY provider, model
ORDER BY provider, model;
