"""The analyzer's price table, exported as Parquet for the Spark job: the SAME rows DuckDB joins.

The pricing rules stay in one place (genai-prices + the user price file, analyzer/pricing.py): the analyzer
resolves the dataset's (provider, model) pairs and writes `price_rows` as it installed it; the Spark job
only joins it. Coefficients are DECIMAL(38, 24), exact.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

from analyzer.analysis import Analysis


def export_price_table(data: Path | str | None, out: Path, prices_file: Path | None = None) -> int:
    """Write the price rows of the dataset's models to `out` (Parquet); returns how many rows."""
    analysis = Analysis.open(data, prices_file)
    analysis.install_charges()
    table = analysis.con.sql("SELECT * FROM price_rows ORDER BY provider, model").to_arrow_table()
    out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, out)
    return table.num_rows
