-- Without analyzer/gpu.py there is no GPU cost per span: an empty view keeps the cost query valid.
CREATE OR REPLACE TEMP VIEW span_gpu_costs AS
SELECT NULL::BLOB AS trace_id, NULL::BLOB AS span_id, NULL::DOUBLE AS gpu_cost_usd
WHERE false;
