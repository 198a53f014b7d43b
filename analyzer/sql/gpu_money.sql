-- Money of GPU time: slice-seconds x USD per slice-hour, as one exact DECIMAL per piece, so that every
-- grouping of the same pieces sums to the same figure (analyze gpu, analyze cost, the report).
CREATE OR REPLACE TEMP MACRO gpu_piece_cost(seconds, usd_per_hour) AS
    (seconds * usd_per_hour / 3600)::DECIMAL(38, 24);
