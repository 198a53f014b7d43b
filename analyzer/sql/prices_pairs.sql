-- The distinct (provider, model) pairs whose usage counts: the only models the price table must resolve.
-- The model is the one the provider answered with (often dated), else the one requested.
-- Read from `spans` (every span carrying usage), not counted_spans: a superset of the counted pairs,
-- without paying for the dataset-wide exactly-once rule twice.
SELECT DISTINCT coalesce(provider, '') AS provider, coalesce(response_model, request_model) AS model
FROM spans
WHERE coalesce(response_model, request_model) IS NOT NULL
  AND (coalesce(input_tokens, 0) > 0 OR coalesce(output_tokens, 0) > 0 OR coalesce(cache_read_tokens, 0) > 0
       OR coalesce(cache_write_tokens, 0) > 0 OR coalesce(reasoning_tokens, 0) > 0)
ORDER BY provider, model;
