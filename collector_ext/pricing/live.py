"""Pricing one call in memory, with the same price rows the analyzer joins (`rules.py`), for the receiver.

The receiver prices every counted call as it writes it (live cost metrics) and every call of a task in
flight (runaway cost so far). `genai_prices.calc_price` would cost ~300 us a call; here a pair is resolved
once (its rows exported by `rules.price_pair`, the analyzer's own export) and a call costs a dict lookup,
a scan of the pair's few rows and nine integer products.

Money is an integer count of 1e-24 USD (`NANO_SCALE`): the price rows hold DECIMAL(38, 24) coefficients,
so integers add up exactly as DuckDB's DECIMAL(38, 24) sums do, in any order; a float only at the end.

Calls come in batches (the spans the receiver writes, the spans of a request): `LivePrices.locate` finds every
call's price row at once (NumPy over the batch, one pass per row of each pair seen), and `CallPrices.cost`
sums a group of calls exactly: within one row a cost is linear in the token counts, so the sum of the
calls' costs is the row's coefficients times the sums of their tokens (integers, any order).

The row a call takes is the one the analyzer's join picks (analyzer/sql/cost_span_costs.sql; keep them the
same): valid_from <= start < valid_to (NULL: open), time of day (UTC, microseconds) in [tod_from, tod_to),
input_gt < input tokens <= input_le (NULL: no upper bound). No row: the call is unpriced.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from collector_ext.decode.dialects import TOKEN_COLUMNS
from collector_ext.pricing.price_file import UserPrice, load_price_file
from collector_ext.pricing.rules import DAY_US, PRICE_COLUMNS, PriceTable, price_pair, resolved_names
from collector_ext.schema import MODALITY_COLUMNS

SCALE = 10**24  # units of 1e-24 USD per USD (the price rows' DECIMAL(38, 24) scale)
NS_PER_US = 1_000
# A bound on the pairs remembered: a client sending endless distinct model names must not grow memory
# without end. Past it the oldest pair is forgotten (and resolved again if it comes back).
MAX_PAIRS = 10_000
# The token columns a price row's coefficients multiply, in its coefficients' order (PRICE_COLUMNS).
PRICED_COLUMNS = (*TOKEN_COLUMNS, *MODALITY_COLUMNS)


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
    c_input_audio: int  # the modality parts (rules.MODALITY_FIELDS), in PRICE_COLUMNS' order
    c_input_image: int
    c_input_video: int
    c_output_audio: int
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

    def holding(self, start_ns: np.ndarray, input_tokens: np.ndarray) -> np.ndarray:
        """`holds` for arrays of calls (int64 ns, int64 tokens): a boolean array."""
        held = input_tokens > self.input_gt
        if self.input_le is not None:
            held &= input_tokens <= _int64(self.input_le)
        if self.valid_from_ns is not None:
            held &= start_ns >= _int64(self.valid_from_ns)
        if self.valid_to_ns is not None:
            held &= start_ns < _int64(self.valid_to_ns)
        tod = (start_ns // NS_PER_US) % DAY_US  # floor division and modulo, as Python's ints
        return held & (tod >= self.tod_from_us) & (tod < self.tod_to_us)

    def cost(self, tokens: Sequence[int], calls: int) -> int:
        """What `calls` calls priced by this row cost in all, `tokens` their summed counts (PRICED_COLUMNS
        order: the five token counts, then the modality parts)."""
        coefficients = (self.c_input, self.c_output, self.c_cache_read, self.c_cache_write, self.c_reasoning,
                        self.c_input_audio, self.c_input_image, self.c_input_video, self.c_output_audio)  # fmt: skip
        return sum(c * int(t) for c, t in zip(coefficients, tokens, strict=True)) + self.c_request * calls


_INT64 = np.iinfo(np.int64)


def _int64(value: int) -> int:
    """A bound within int64 (a far-future validity end compares as 'never' either way)."""
    return min(max(value, int(_INT64.min)), int(_INT64.max))


@dataclass(frozen=True, slots=True)
class CallPrices:
    """The price row of each call of a batch: `rows[row[i]]`, or no price where `row[i]` is -1."""

    rows: list[LiveRow]
    row: np.ndarray  # int64, one per call

    @property
    def priced(self) -> np.ndarray:
        return self.row >= 0


def _codes(values: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, list]:
    """Each value as a code into the distinct values (-1: null)."""
    encoded = pc.dictionary_encode(values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values)
    codes = encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
    return codes, encoded.dictionary.to_pylist()


def shown_names(provider: pa.Array | pa.ChunkedArray, model: pa.Array | pa.ChunkedArray) -> tuple[pa.Array, pa.Array]:
    """Each call's provider and model as the analyzer shows and groups them (`--by provider --by model`):
    `rules.resolved_names` of a call that names a model, the provider as sent for one that names none.
    Resolved once per distinct pair of the batch (NumPy codes), then taken per call."""
    providers, provider_names = _codes(provider)
    models, model_names = _codes(model)
    radix = len(model_names) + 1  # code + 1: 0 is null
    pairs, pair_of = np.unique((providers + 1) * radix + (models + 1), return_inverse=True)
    shown_providers: list[str | None] = []
    shown_models: list[str | None] = []
    for pair in pairs.tolist():
        provider_code, model_code = divmod(pair, radix)
        name = provider_names[provider_code - 1] if provider_code else None
        named = model_names[model_code - 1] if model_code else None
        if named is not None:
            name, named = resolved_names(name or "", named)
        shown_providers.append(name)
        shown_models.append(named)
    take = pa.array(pair_of.reshape(-1))
    return pa.array(shown_providers, pa.string()).take(take), pa.array(shown_models, pa.string()).take(take)


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
        input_audio_tokens: int = 0,
        input_image_tokens: int = 0,
        input_video_tokens: int = 0,
        output_audio_tokens: int = 0,
    ) -> int | None:
        """The call's cost in 1e-24 USD, or None when its model has no price (or it names no model). The
        modality counts are parts of input / output (schema.MODALITY_COLUMNS), as the analyzer prices them."""
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
                    + row.c_input_audio * input_audio_tokens
                    + row.c_input_image * input_image_tokens
                    + row.c_input_video * input_video_tokens
                    + row.c_output_audio * output_audio_tokens
                    + row.c_request
                )
        return None

    def locate(
        self,
        provider: pa.Array | pa.ChunkedArray,
        model: pa.Array | pa.ChunkedArray,
        start_ns: np.ndarray,
        input_tokens: np.ndarray,
        where: np.ndarray,
    ) -> CallPrices:
        """The price row of each call of a batch: the calls `where` is true for (the others get -1), as
        `cost` picks it (provider None is "", no model is no price). `model`: the model each call is
        priced by (response model, else request model)."""
        rows: list[LiveRow] = []
        row = np.full(len(start_ns), -1, dtype=np.int64)
        providers, provider_names = _codes(pc.fill_null(provider, ""))
        models, model_names = _codes(model)
        asked = np.flatnonzero(where & (models >= 0))  # no model: no price
        if not len(asked):
            return CallPrices(rows, row)
        pairs, pair_of = np.unique(providers[asked] * len(model_names) + models[asked], return_inverse=True)
        for number, pair in enumerate(pairs.tolist()):
            members = asked[pair_of.reshape(-1) == number]
            left = np.ones(len(members), dtype=bool)  # calls of the pair without a row yet: the first one holds
            pair_provider, pair_model = provider_names[pair // len(model_names)], model_names[pair % len(model_names)]
            for price in self.rows(pair_provider, pair_model):
                held = left & price.holding(start_ns[members], input_tokens[members])
                if held.any():
                    row[members[held]] = len(rows)
                    rows.append(price)
                    left &= ~held
                if not left.any():
                    break
        return CallPrices(rows, row)

    def unpriced(self) -> dict[tuple[str, str], str]:
        """The pairs seen without a price, and why (as `analyze cost` names them)."""
        with self._lock:
            return dict(self._unpriced)


def usd(units: int) -> float:
    """1e-24 USD units as USD: the float nearest the exact value (as the analyzer's JSON gives a DECIMAL)."""
    return float(Fraction(units, SCALE))
