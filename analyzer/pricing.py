"""The analyzer's side of the pricing rules: the price rows of `collector_ext.pricing` (the ONE place the
rules live, imported by the receiver's live cost metrics too) installed as DuckDB tables and joined to the
counted calls.

Once per run: take the DISTINCT (provider, model) pairs of the dataset's counted inference spans (a few
hundred), export each as price rows (`collector_ext/pricing/rules.py`: genai-prices resolution, the user
price file, exact coefficients per validity period x time-of-day window x input-tier band), and join them in
DuckDB, which computes cost in DECIMAL(38, 24) (exact for every bundled price: `sql/cost_span_costs.sql`).

The user price file's format: `collector_ext/pricing/price_file.py`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import duckdb

from analyzer.dataset import AnalyzerError, load_sql
from collector_ext.pricing import price_file, rules
from collector_ext.pricing.price_file import PriceFileError, UserPrice
from collector_ext.pricing.rules import (
    COST_SCALE,
    COST_TYPE,
    NOT_A_PROVIDER,
    PRICE_COLUMNS,
    PRICE_SCHEMA,
    SEMCONV_PROVIDER_ALIASES,
    TOKEN_FIELDS,
    ModelRef,
    PriceTable,
    model_refs,
    price_pair,
    resolve_model,
    resolved_names,
)

__all__ = [
    "COST_SCALE",
    "COST_TYPE",
    "NOT_A_PROVIDER",
    "PRICE_COLUMNS",
    "PRICE_SCHEMA",
    "SEMCONV_PROVIDER_ALIASES",
    "TOKEN_FIELDS",
    "ModelRef",
    "PriceTable",
    "UserPrice",
    "build_price_table",
    "install_span_costs",
    "load_price_file",
    "model_refs",
    "price_pair",
    "resolve_model",
    "resolved_names",
]


def load_price_file(path: Path) -> list[UserPrice]:
    """The user price file; any problem is one AnalyzerError line."""
    try:
        return price_file.load_price_file(path)
    except PriceFileError as err:
        raise AnalyzerError(str(err)) from None


def build_price_table(
    pairs: list[tuple[str, str]], prices_file: Path | None = None, shown: Sequence[tuple[str, str]] = ()
) -> PriceTable:
    try:
        return rules.build_price_table(pairs, prices_file, shown)
    except PriceFileError as err:
        raise AnalyzerError(str(err)) from None


def install_span_costs(con: duckdb.DuckDBPyConnection, prices_file: Path | None = None) -> PriceTable:
    """Create view `span_costs` over `counted_spans` (from `analyzer.dataset.open_dataset`).

    span_costs(trace_id, span_id, provider, model, cost_usd DECIMAL(38,24), priced BOOLEAN, price_source,
    priced_model, reported_cost_usd): one row per span whose usage counts (`counted`). `cost_usd` is NULL
    and `priced` false when the model has no price. Also tables `price_rows`, `unpriced_models` and
    `model_names` (every pair of the dataset's calls and the names it is shown as: `resolved_names`).
    """
    pairs = con.execute(load_sql("prices_pairs.sql")).fetchall()
    table = build_price_table(
        [(p, m) for p, m, counted in pairs if counted], prices_file, [(p, m) for p, m, counted in pairs if not counted]
    )
    for name, arrow in (
        ("price_rows", table.arrow()),
        ("unpriced_models", table.unpriced_arrow()),
        ("model_names", table.names_arrow()),
    ):
        con.register(f"_{name}_arrow", arrow)
        con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT * FROM _{name}_arrow")  # noqa: S608 (fixed)
        con.unregister(f"_{name}_arrow")
    con.execute(load_sql("cost_span_costs.sql"))
    return table
