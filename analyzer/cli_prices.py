"""`analyze prices`: the price in force for every model the dataset holds, what each cost, and the unpriced ones."""

from __future__ import annotations

import typer

from analyzer.analysis import Analysis
from analyzer.cli_options import DataOption, FormatOption, GpuPricesOption, PricesOption, SinceOption, UntilOption
from analyzer.output import OutputFormat, TableLayout, render
from analyzer.price_list import PRICE_COLUMNS, price_list, price_sources
from analyzer.timeparse import TimeRange

# left out first when a terminal is too narrow for every column
OPTIONAL = ("request_usd", "tiers", "reasoning_usd_per_mtok", "cache_write_usd_per_mtok", "priced_as",
            "unpriced_calls", "input_tokens", "output_tokens", "cache_read_usd_per_mtok", "source")  # fmt: skip


def prices_command(
    data: DataOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
    prices: PricesOption = None,
    gpu_prices: GpuPricesOption = None,
    fmt: FormatOption = OutputFormat.table,
) -> None:
    """The list price in force for every (provider, model) of the dataset, in USD per million tokens, beside
    its calls, tokens, token cost and the effective price paid in the time range; unpriced models with why.

    Prices: genai-prices' bundled data, then --prices (analyzer/pricing.py). The list price is the one at
    the dataset's newest call (first band of a tiered price; `tiers` counts the bands)."""
    window = TimeRange.parse(since, until)
    analysis = Analysis.open(data, prices, gpu_prices)
    rows = price_list(analysis, window)
    sources = price_sources(analysis)
    render(
        rows,
        fmt,
        title=f"Prices (genai-prices {sources.genai_prices_version}"
        + (f", {sources.prices_file}" if sources.prices_file else "")
        + ")",
        columns=PRICE_COLUMNS,
        totals=("llm_calls", "unpriced_calls", "token_cost_usd"),
        layout=TableLayout(optional=OPTIONAL),
        empty=None if rows else analysis.why_empty("LLM calls", window),
    )


def register(app: typer.Typer) -> None:
    app.command("prices")(prices_command)
