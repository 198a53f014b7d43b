"""Pricing one call in memory, with the same price rows the analyzer joins (`rules.py`), for the receiver.

The receiver prices every counted call as it writes it (live cost metrics) and every call of a task in
flight (runaway cost so far). `genai_prices.calc_price` would cost ~300 us a call; here a pair is resolved
once (its rows exported by `rules.price_pair`, the analyzer's own export) and a call costs a dict lookup,
a scan of the pair's few rows and five integer products.

Money is an integer count of 1e-24 USD (`NANO_SCALE`): the price rows hold DECIMAL(38, 24) coefficients,
so integers add up exactly as DuckDB's DECIMAL(38, 24) sums do, in any order; a float only at the end.

The row a call takes is the one the analyzer's join picks (analyzer/sql/cost_span_costs.sql; keep them the
same): valid_from <= start < valid_to (NULL: open), time of day (UTC, microseconds) in [tod_from, tod_to),
input_gt < input tokens <= input_le (NULL: no upper bound). No row: the call is unpriced.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

from collector_ext.pricing.price_file import UserPrice, load_price_file
from collector_ext.pricing.rules import DAY_US, PRICE_COLUMNS, PriceTable, price_pair

SCALE = 10**24  # units of 1e-24 USD per USD (the price rows' DECIMAL(38, 24) scale)
NS_PER_US = 1_000
# A bound on the pairs remembered: a client sending endless distinct model names must not grow memory
# without end. Past it the oldest pair is forgotten (and resolved again if it comes back).
MAX_PAIRS = 10_000


@dataclass(frozen=True, slots=True)
class LiveRow:
    """One price row with its bounds in the units calls come in and integer coefficients (1e-24 USD)."""

    valid_from_ns: int | None
    valid_to_ns: int | None
    tod_from_us: int
    tod_to_us: int
    input_gt: int
    input_le: int | None
    c_input: int
    c_output: int
    c_cache_read: int
    c_cache_write: int
    c_reasoning: int
    c_request: int

    def holds(self, start_ns: int, input_tokens: int) -> bool:
        if self.valid_from_ns is not None and start_ns < self.valid_from_ns:
            return False
        if self.valid_to_ns is not None and start_ns >= self.valid_to_ns:
            return False
        tod = (start_ns // NS_PER_US) % DAY_US
        if not self.tod_from_us <= tod < self.tod_to_us:
            return False
        return input_tokens > self.input_gt and (self.input_le is None or input_tokens <= self.input_le)


def _units(value: Decimal) -> int:
    return int(value.scaleb(24).to_integral_value())


def _ns(moment) -> int | None:
    if moment is None:
        return None
    return int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * 1_000


def live_rows(table: PriceTable) -> list[LiveRow]:
    rows = []
    for row in table.rows:
        coefficients = [_units(row[name]) for name in PRICE_COLUMNS]
        rows.append(
            LiveRow(
                _ns(row["valid_from"]),
                _ns(row["valid_to"]),
                row["tod_from_us"],
                row["tod_to_us"],
                row["input_gt"],
                row["input_le"],
                *coefficients,
            )
        )
    return rows


class LivePrices:
    """Prices calls by (provider, model) pair; pairs are resolved on first sight and remembered.

    `prices_file`: the user price file (`--prices`), loaded once at start (raises PriceFileError).
    Thread-safe: the receiver prices from its request threads and its flusher.
    """

    def __init__(self, prices_file: Path | None = None, max_pairs: int = MAX_PAIRS) -> None:
        self.prices_file = prices_file
        self._user: list[UserPrice] = load_price_file(prices_file) if prices_file else []
        self._pairs: dict[tuple[str, str], list[LiveRow]] = {}
        self._unpriced: dict[tuple[str, str], str] = {}
        self._max_pairs = max(1, max_pairs)
        self._lock = threading.Lock()

    def rows(self, provider: str, model: str) -> list[LiveRow]:
        """The pair's rows ([]: no price). Resolution takes milliseconds: once per pair."""
        key = (provider, model)
        found = self._pairs.get(key)
        if found is not None:
            return found
        table = PriceTable()
        price_pair(provider, model, self._user, table)  # genai-prices lookups: outside the lock
        rows = live_rows(table)
        with self._lock:
            if len(self._pairs) >= self._max_pairs:
                oldest = next(iter(self._pairs))
                del self._pairs[oldest]
                self._unpriced.pop(oldest, None)
            self._pairs[key] = rows
            if key in table.unpriced:
                self._unpriced[key] = table.unpriced[key]
        return rows

    def cost(
        self,
        provider: str | None,
        model: str | None,
        start_ns: int,
        input_tokens: int,
        output_tokens: int,
        cache_read_tokens: int,
        cache_write_tokens: int,
        reasoning_tokens: int,
    ) -> int | None:
        """The call's cost in 1e-24 USD, or None when its model has no price (or it names no model)."""
        if model is None:
            return None  # the analyzer prices a call by its model: none, no price row
        for row in self.rows(provider or "", model):
            if row.holds(start_ns, input_tokens):
                return (
                    row.c_input * input_tokens
                    + row.c_output * output_tokens
                    + row.c_cache_read * cache_read_tokens
                    + row.c_cache_write * cache_write_tokens
                    + row.c_reasoning * reasoning_tokens
                    + row.c_request
                )
        return None

    def unpriced(self) -> dict[tuple[str, str], str]:
        """The pairs seen without a price, and why (as `analyze cost` names them)."""
        with self._lock:
            return dict(self._unpriced)


def usd(units: int) -> float:
    """1e-24 USD units as USD: the float nearest the exact value (as the analyzer's JSON gives a DECIMAL)."""
    return float(Fraction(units, SCALE))
