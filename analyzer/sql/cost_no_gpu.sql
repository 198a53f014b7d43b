-- A dataset without GPU allocations has no GPU cost per span: an empty view keeps the figures valid.
CREATE OR REPLACE TEMP TABLE span_gpu_costs AS
SELECT NULL::BLOB AS trace_id, NULL::BLOB AS span_id, NULL::DECIMAL(38, 24) AS gpu_cost_usd
WHERE false;
