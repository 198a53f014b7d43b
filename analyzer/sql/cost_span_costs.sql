-- span_costs: the cost of every span whose token usage counts (exactly once, see counted_spans.sql).
-- price_rows (analyzer/pricing.py) holds, per (provider, model) pair of the dataset, one row per validity
-- period x time-of-day window x input-tier band, with exact DECIMAL(38,24) coefficients per token field
-- (and per modality part: audio / image / video input, audio output tokens);
-- exactly one row matches a priced span. No matching row: the model has no price, cost_usd is NULL.
-- The grouping columns of the span ride along so that cost queries scan the spans once.
CREATE OR REPLACE VIEW span_costs AS
WITH calls AS (
    SELECT trace_id, span_id, start_time, reported_cost_usd, category, task_id, agent_name, service_name,
           k8s_namespace, conversation_id, request_model, response_model, provider AS span_provider,
           attributes, resource_attributes,
           (epoch_ns(start_time) // 1000) % 86400000000 AS time_of_day_us,
           coalesce(provider, '') AS provider,
           coalesce(response_model, request_model) AS model,
           coalesce(input_tokens, 0) AS input_tokens,
           coalesce(output_tokens, 0) AS output_tokens,
           coalesce(cache_read_tokens, 0) AS cache_read_tokens,
           coalesce(cache_write_tokens, 0) AS cache_write_tokens,
           coalesce(reasoning_tokens, 0) AS reasoning_tokens,
           coalesce(input_audio_tokens, 0) AS input_audio_tokens,
           coalesce(input_image_tokens, 0) AS input_image_tokens,
           coalesce(input_video_tokens, 0) AS input_video_tokens,
           coalesce(output_audio_tokens, 0) AS output_audio_tokens
    FROM counted_calls
)
SELECT c.trace_id, c.span_id, c.start_time, c.category, c.task_id, c.agent_name, c.service_name, c.k8s_namespace,
       c.conversation_id, c.request_model, c.response_model, c.span_provider AS provider, c.model,
       c.attributes, c.resource_attributes,
       c.input_tokens, c.output_tokens, c.cache_read_tokens, c.cache_write_tokens, c.reasoning_tokens,
       c.input_tokens * p.c_input + c.output_tokens * p.c_output
         + c.cache_read_tokens * p.c_cache_read + c.cache_write_tokens * p.c_cache_write
         + c.reasoning_tokens * p.c_reasoning
         + c.input_audio_tokens * p.c_input_audio + c.input_image_tokens * p.c_input_image
         + c.input_video_tokens * p.c_input_video + c.output_audio_tokens * p.c_output_audio
         + p.c_request AS cost_usd,
       p.source IS NOT NULL AS priced,
       p.source AS price_source,
       p.priced_model,
       c.reported_cost_usd
FROM calls AS c
LEFT JOIN price_rows AS p
  ON p.provider = c.provider AND p.model = c.model
 AND (p.valid_from IS NULL OR c.start_time >= p.valid_from)
 AND (p.valid_to IS NULL OR c.start_time < p.valid_to)
 AND c.time_of_day_us >= p.tod_from_us AND c.time_of_day_us < p.tod_to_us
 AND c.input_tokens > p.input_gt
 AND (p.input_le IS NULL OR c.input_tokens <= p.input_le);
