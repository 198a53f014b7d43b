"""The prices in force for every (provider, model) the dataset holds: `analyze prices`, the console's Prices page.

Per pair, the list price that applies at `at` (default: the dataset's newest call), from the price rows
`analyzer.pricing` exported (the very rows every cost is computed from), in USD per million tokens:
input (uncached), cache read, cache write, output, reasoning (output includes reasoning, input includes
cache tokens: a cache-read token costs the input price plus the cache-read difference, as the rows store
it), and per request. Tiered prices show their first band and how many bands there are; prices that change
by time of day show the window that contains `at`. Beside it the pair's calls, tokens and token cost in the
window (`analyzer.cost.cost_rows` by provider and model: the same figures as `analyze cost`) and the
effective price paid: token cost per million tokens (input + output). Pairs without a price come with the
reason (`unpriced_calls` counts their calls).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from analyzer.analysis import Analysis
from analyzer.cost import CostQuery, cost_rows
from analyzer.timeparse import TimeRange

MILLION = Decimal(1_000_000)
PRICE_COLUMNS = (
    "provider",
    "model",
    "source",
    "priced_as",
    "input_usd_per_mtok",
    "cache_read_usd_per_mtok",
    "cache_write_usd_per_mtok",
    "output_usd_per_mtok",
    "reasoning_usd_per_mtok",
    "request_usd",
    "tiers",
    "llm_calls",
    "input_tokens",
    "output_tokens",
    "unpriced_calls",
    "token_cost_usd",
    "effective_usd_per_mtok",
    "unpriced_reason",
)


@dataclass(frozen=True)
class PriceSources:
    """Where the prices come from: genai-prices' bundled data (its version) and the user's price files."""

    genai_prices_version: str
    prices_file: Path | None
    gpu_prices_file: Path | None


def price_sources(analysis: Analysis) -> PriceSources:
    try:
        bundled = version("genai-prices")
    except PackageNotFoundError:  # pragma: no cover - a dependency: always installed
        bundled = "unknown"
    return PriceSources(bundled, analysis.prices_file, analysis.gpu_prices_file)


def price_list(analysis: Analysis, window: TimeRange | None = None, at: datetime | None = None) -> list[dict[str, Any]]:
    """One row per (provider, model) pair of the dataset (PRICE_COLUMNS), most token cost first, unpriced last."""
    window = window or TimeRange()
    table = analysis.install_charges()
    if at is None:
        newest = analysis.con.execute("SELECT max(start_time) FROM charges").fetchone()
        at = newest[0] if newest and newest[0] is not None else datetime.now(UTC)
    used = {  # the price rows are per pair as the spans name it
        (row["span_provider"] or "", row["span_model"] or ""): row
        for row in cost_rows(analysis, CostQuery(by=["span_provider", "span_model"], window=window)).rows
    }
    in_force: dict[tuple[str, str], dict[str, Any]] = {}
    bands: dict[tuple[str, str], int] = {}
    micros = (at.hour * 3600 + at.minute * 60 + at.second) * 1_000_000 + at.microsecond
    for row in table.rows:
        if row["valid_from"] is not None and at < row["valid_from"]:
            continue
        if row["valid_to"] is not None and at >= row["valid_to"]:
            continue
        if not row["tod_from_us"] <= micros < row["tod_to_us"]:
            continue
        key = (row["provider"], row["model"])
        bands[key] = bands.get(key, 0) + 1
        if row["input_gt"] == -1:
            in_force[key] = row
    rows = []
    pairs = set(in_force) | set(table.unpriced) | {k for k, r in used.items() if r["llm_calls"]}
    for key in pairs:
        price = in_force.get(key)
        usage = used.get(key, {})
        rows.append(_row(key, price, bands.get(key, 0), usage, table.unpriced.get(key)))
    rows.sort(key=lambda r: (r["token_cost_usd"] is None, -(r["token_cost_usd"] or 0), r["provider"], r["model"]))
    return rows


def _per_mtok(value: Decimal) -> float:
    return float(value * MILLION)


def _row(
    key: tuple[str, str], price: dict[str, Any] | None, bands: int, usage: dict[str, Any], reason: str | None
) -> dict[str, Any]:
    provider, model = key
    tokens = (usage.get("input_tokens") or 0) + (usage.get("output_tokens") or 0)
    cost = usage.get("token_cost_usd")
    row: dict[str, Any] = {
        "provider": provider or None,
        "model": model,
        "source": price["source"] if price else None,
        "priced_as": f"{price['priced_provider']}/{price['priced_model']}" if price else None,
        "input_usd_per_mtok": None,
        "cache_read_usd_per_mtok": None,
        "cache_write_usd_per_mtok": None,
        "output_usd_per_mtok": None,
        "reasoning_usd_per_mtok": None,
        "request_usd": None,
        "tiers": bands or None,
        "llm_calls": usage.get("llm_calls", 0),
        "input_tokens": usage.get("input_tokens", 0),
        "output_tokens": usage.get("output_tokens", 0),
        "unpriced_calls": usage.get("unpriced_calls", 0),
        "token_cost_usd": cost,
        "effective_usd_per_mtok": float(Decimal(cost) * MILLION / tokens) if cost is not None and tokens else None,
        "unpriced_reason": reason,
    }
    if price:  # input includes cache tokens and output reasoning: the rows store the differences
        row.update(
            input_usd_per_mtok=_per_mtok(price["c_input"]),
            cache_read_usd_per_mtok=_per_mtok(price["c_input"] + price["c_cache_read"]),
            cache_write_usd_per_mtok=_per_mtok(price["c_input"] + price["c_cache_write"]),
            output_usd_per_mtok=_per_mtok(price["c_output"]),
            reasoning_usd_per_mtok=_per_mtok(price["c_output"] + price["c_reasoning"]),
            request_usd=float(price["c_request"]),
        )
    return row
