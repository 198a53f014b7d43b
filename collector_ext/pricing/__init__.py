"""The pricing rules, in one place that both the receiver (live cost metrics, runaway cost so far) and the
analyzer (`analyze cost`, every figure) import, as they both import `collector_ext.schema`:

- `price_file.py`: the user price file (`--prices`), parsed and validated;
- `rules.py`: genai-prices (bundled, offline) resolution of a (provider, model) pair and its export to price
  rows: exact coefficients per token field, per validity period x time-of-day window x input-tier band;
- `live.py`: the in-memory lookup of those same rows for one call (the receiver's path: no `calc_price`).

The analyzer joins the same rows in DuckDB (`analyzer/pricing.py`, `analyzer/sql/cost_span_costs.sql`).
"""
