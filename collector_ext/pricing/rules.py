"""Prices of (provider, model) pairs as rows of exact coefficients: genai-prices (bundled, offline) + the
user price file. The analyzer joins these rows in DuckDB; the receiver looks them up in memory (`live.py`).

`genai_prices.calc_price` costs ~300 us a call: far too slow per span. Instead, once per pair:

1. resolve the pair with genai-prices' own matching rules (model `equals` / `starts_with` / regex clauses,
   dated names, provider ids and `provider_match` aliases such as `aws.bedrock` or `gcp.vertex_ai`, fallback
   providers), after the user price file, and after mapping the few OpenTelemetry provider names that
   genai-prices does not know (`SEMCONV_PROVIDER_ALIASES`, e.g. `x_ai` -> `x-ai`), and where the provider
   names a framework or router or is missing, from the model's `provider/` prefix (`model_refs`). A span
   that names a provider genai-prices does not know is NOT matched by model name alone: a self-hosted
   `vllm` model that happens to share a public model's name stays unpriced;
2. export the resolved model as price rows: one row per (time cell, input-tier band) with exact DECIMAL
   coefficients per token field. A time cell is a validity period [valid_from, valid_to) (historic
   prices start at a UTC date) crossed with a time-of-day window (DeepSeek off-peak prices); an input band
   is (input_gt, input_le] of total input tokens (tiered prices: crossing a tier prices ALL tokens at the
   tier rate, genai-prices' "cliff" model). Within a cell and band genai-prices' price is affine in the
   token counts, so the coefficients are measured from genai-prices itself (`ModelInfo.calc_price` on
   unit probes, Decimal-exact), never re-derived: cost = c_input * input_tokens + c_output * output_tokens
   + c_cache_read * cache_read_tokens + c_cache_write * cache_write_tokens + c_reasoning * reasoning_tokens
   + c_request, plus one coefficient per modality part (audio / image / video input, audio output tokens:
   genai-prices' `input_audio_mtok` ... prices, as differences to the text price they are part of);
3. the cost of a call is computed from the one row whose cell and band hold it, exactly: DECIMAL(38, 24)
   in DuckDB (analyzer/sql/cost_span_costs.sql), integers of 1e-24 USD in the receiver (`live.py`).

Price variants (e.g. a provider's service tiers) need a request context spans do not carry: the standard
price applies, as in `calc_price` without `price_context`.

Token semantics (the dataset's rule): input includes cache read/write tokens, output includes reasoning;
they are passed to genai-prices as `input_tokens`, `cache_read_tokens`, `cache_write_tokens`,
`output_tokens`, `output_reasoning_tokens`, and the parts per modality (`schema.MODALITY_COLUMNS`) as
`input_audio_tokens`, `input_image_tokens`, `input_video_tokens`, `output_audio_tokens` (parts of input /
output, as genai-prices' usage units nest them). Models with no price are unpriced: cost NULL, counted as
`unpriced_calls`, never silently zero.

A pair is also shown (grouped, labelled) under the provider that serves it and the model as that provider
names it (`resolved_names`), the same resolution; the raw strings stay in the dataset.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any

import pyarrow as pa

from collector_ext.pricing.price_file import UserPrice, load_price_file

COST_TYPE = pa.decimal128(38, 24)
COST_SCALE = Decimal(1).scaleb(-24)
MILLION = Decimal(1_000_000)
DAY_US = 86_400_000_000

# OpenTelemetry `gen_ai.provider.name` values genai-prices does not match by itself (its own
# provider_match already covers aws.bedrock, gcp.vertex_ai, gcp.gemini, azure.ai.openai, mistral_ai ...).
SEMCONV_PROVIDER_ALIASES = {"x_ai": "x-ai", "azure.ai.inference": "azure", "gcp.gen_ai": "google"}

TOKEN_FIELDS = ("input", "output", "cache_read", "cache_write", "reasoning")
# the parts of input / output in another modality (collector_ext.schema.MODALITY_COLUMNS): each a difference
# to the text price, 0 where the model has no price of its own for it (genai-prices then prices them as text)
MODALITY_FIELDS = ("input_audio", "input_image", "input_video", "output_audio")
PRICE_COLUMNS = [f"c_{name}" for name in (*TOKEN_FIELDS, *MODALITY_FIELDS)] + ["c_request"]

PRICE_SCHEMA = pa.schema(
    [
        ("provider", pa.string()),  # the pair as spelled in the dataset ('' for none)
        ("model", pa.string()),
        ("valid_from", pa.timestamp("us", tz="UTC")),  # NULL: since always
        ("valid_to", pa.timestamp("us", tz="UTC")),  # NULL: forever
        ("tod_from_us", pa.int64()),  # time-of-day window [from, to) in microseconds since UTC midnight
        ("tod_to_us", pa.int64()),
        ("input_gt", pa.int64()),  # input tier band (input_gt, input_le]; -1: from zero
        ("input_le", pa.int64()),  # NULL: no upper bound
        *[(name, COST_TYPE) for name in PRICE_COLUMNS],
        ("source", pa.string()),  # genai-prices | user
        ("priced_provider", pa.string()),
        ("priced_model", pa.string()),
    ]
)

UNPRICED_SCHEMA = pa.schema([("provider", pa.string()), ("model", pa.string()), ("reason", pa.string())])
# every (provider, model) pair of the dataset's calls -> the names it is shown and grouped as (resolved_names)
NAMES_SCHEMA = pa.schema(
    [
        ("provider", pa.string()),  # as spelled in the dataset ('' for none)
        ("model", pa.string()),
        ("shown_provider", pa.string()),
        ("shown_model", pa.string()),
    ]
)


@dataclass
class PriceTable:
    """What `install_span_costs` exported: the price rows and the pairs left unpriced (with the reason)."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    unpriced: dict[tuple[str, str], str] = field(default_factory=dict)
    names: dict[tuple[str, str], tuple[str | None, str]] = field(default_factory=dict)  # resolved_names per pair

    def arrow(self) -> pa.Table:
        return pa.Table.from_pylist(self.rows, schema=PRICE_SCHEMA)

    def names_arrow(self) -> pa.Table:
        pairs = [{"provider": p, "model": m, "shown_provider": sp, "shown_model": sm}
                 for (p, m), (sp, sm) in sorted(self.names.items())]  # fmt: skip
        return pa.Table.from_pylist(pairs, schema=NAMES_SCHEMA)

    def unpriced_arrow(self) -> pa.Table:
        pairs = [{"provider": p, "model": m, "reason": r} for (p, m), r in sorted(self.unpriced.items())]
        return pa.Table.from_pylist(pairs, schema=UNPRICED_SCHEMA)


# ---------------------------------------------------------------- genai-prices resolution


# Names that instrumentations put where the provider belongs but that name an agent framework or a router,
# not who serves and bills the call (strands-agents writes `gen_ai.system=strands-agents`, LangChain
# callbacks `langchain`): the provider then comes from the model (a LiteLLM-style `provider/` prefix, else
# genai-prices' model matching, as `calc_price` does without a provider). `litellm` is genai-prices' own
# case of this (data_snapshot.py `find_provider_model`).
NOT_A_PROVIDER = frozenset(
    {"litellm", "strands-agents", "strands", "langchain", "langgraph", "pydantic-ai", "pydantic_ai", "crewai",
     "llamaindex", "llama_index", "autogen", "ag2", "semantic-kernel", "semantic_kernel", "haystack", "dspy",
     "openai-agents", "openai_agents", "google-adk", "adk", "smolagents", "mastra", "unknown"}
)  # fmt: skip


@dataclass(frozen=True)
class ModelRef:
    """What a span's (provider, model) pair is priced as: genai-prices' provider id (None: match the model
    alone) and model reference. The raw strings stay in the dataset; only prices use this."""

    provider_id: str | None
    model: str


def model_refs(provider: str, model: str) -> list[ModelRef]:
    """The references to look up, best first, for one dataset pair, following genai-prices' own matching.

    * provider missing, or a framework / router name (`NOT_A_PROVIDER`): a `provider/model` prefix names the
      provider when genai-prices knows it as a provider id or alias (`openai/gpt-4.1` from LiteLLM,
      `bedrock/...` -> aws, `vertex_ai/...` -> google, `azure/...`); otherwise the model alone is matched;
    * a provider genai-prices knows (OpenTelemetry names mapped by `SEMCONV_PROVIDER_ALIASES`): the model as
      spelled, then without a prefix that names the same provider (`openai/gpt-4.1` under openai); a gateway
      that has prices of its own keeps them (OpenRouter's `openai/gpt-4.1` is OpenRouter's price);
    * a provider genai-prices does not know (self-hosted `vllm`): looked up as is, so it stays unpriced:
      never priced under another provider by its model name.
    """
    from genai_prices.data_snapshot import find_provider_by_id, get_snapshot

    providers = get_snapshot().providers
    name = (provider or "").strip().lower()
    name = SEMCONV_PROVIDER_ALIASES.get(name, name)
    prefix, slash, rest = model.partition("/")
    prefixed = find_provider_by_id(providers, prefix) if slash and rest else None
    if not name or name in NOT_A_PROVIDER:
        if prefixed is not None:
            return [ModelRef(prefixed.id, rest)]
        return [ModelRef(None, model)]
    refs = [ModelRef(name, model)]
    known = find_provider_by_id(providers, name)
    if prefixed is not None and known is not None and prefixed.id == known.id:
        refs.append(ModelRef(name, rest))
    return refs


def resolve_model(provider: str, model: str):
    """genai-prices' (Provider, ModelInfo) for a dataset pair, or a reason string why it has no price."""
    from genai_prices.data_snapshot import get_snapshot

    snapshot = get_snapshot()  # the bundled data; its auto-updater is never started
    reason = "unknown model"
    for ref in model_refs(provider, model):
        try:
            return snapshot.find_provider_model(ref.model, None, ref.provider_id, None)
        except LookupError as err:
            reason = "unknown provider" if "find provider" in str(err) else "unknown model"
    return reason


@lru_cache(maxsize=65536)
def resolved_names(provider: str, model: str) -> tuple[str | None, str]:
    """The (provider, model) a dataset pair is shown and grouped as (`--by provider`, `--by model`, the live
    metrics' labels): who serves and bills the call, and the model as that provider names it. The span's
    provider where it names one (normalized by the decoder: `aws.bedrock`, `openrouter`, `vllm`); where it is
    missing or names a framework or router (`NOT_A_PROVIDER`), the provider a `provider/` prefix names, else
    the model's own provider in genai-prices, as its OpenTelemetry name (`normalize_provider`: `google` ->
    `gcp.gen_ai`), or None when nothing names one. The model without a prefix that names that provider
    (`openai/gpt-4.1` -> `gpt-4.1`). Bounded cache: a client cannot grow it without end."""
    from collector_ext.decode.dialects import normalize_provider

    refs = model_refs(provider, model)
    shown_model = refs[-1].model  # the last reference drops a prefix that names the provider
    name = (provider or "").strip().lower()
    if name and name not in NOT_A_PROVIDER:
        return provider, shown_model
    prefix, slash, _ = model.partition("/")
    if slash and refs[0].provider_id is not None:  # a `provider/` prefix names it, as precisely as it can
        return normalize_provider(prefix), shown_model  # (`vertex_ai/` is gcp.vertex_ai, not all of google)
    resolved = resolve_model(provider, model)
    return (normalize_provider(resolved[0].id) if not isinstance(resolved, str) else None), shown_model


def _has_token_price(model_info) -> bool:
    from genai_prices.types import ModelPrice

    prices = [model_info.prices] if isinstance(model_info.prices, ModelPrice) else [c.prices for c in model_info.prices]
    return any(p.input_mtok is not None or p.output_mtok is not None for p in prices)


def _bundled_breakpoints(model_info) -> tuple[set[datetime], set[int]]:
    """The instants where the model's active conditional price can change: start dates, times of day."""
    from genai_prices.types import ModelPrice, StartDateConstraint, TimeOfDateConstraint

    dates: set[datetime] = set()
    times: set[int] = set()
    if isinstance(model_info.prices, ModelPrice):
        return dates, times
    for conditional in model_info.prices:
        constraint = conditional.constraint
        if isinstance(constraint, StartDateConstraint):
            dates.add(datetime.combine(constraint.start_date, time(), tzinfo=UTC))
        elif isinstance(constraint, TimeOfDateConstraint):
            for moment in (constraint.start_time, constraint.end_time):
                if moment.tzinfo is not None:  # genai-prices compares times of day in UTC
                    moment = datetime.combine(date(1970, 1, 1), moment).astimezone(UTC).timetz()
                times.add(((moment.hour * 60 + moment.minute) * 60 + moment.second) * 1_000_000 + moment.microsecond)
    return dates, times


def _tier_starts(model_price) -> list[int]:
    from genai_prices.types import TieredPrices

    starts: set[int] = set()
    for value in model_price.__dict__.values():
        if isinstance(value, TieredPrices):
            starts.update(tier.start for tier in value.tiers)
    return sorted(starts)


def _usage(**counts: int):
    from genai_prices import Usage

    return Usage(**{k: v for k, v in counts.items() if v})


def _bundled_coefficients(model_info, provider, at: datetime, band: tuple[int, int | None]) -> dict[str, Decimal]:
    """Measure the affine price of one cell and input band with genai-prices' own calculation (exact)."""

    def cost(**counts: int) -> Decimal:
        return model_info.calc_price(_usage(**counts), provider, genai_request_timestamp=at).total_price

    low, high = band
    base = max(low + 1, 1)
    if high is not None and base + 1 > high:  # a one-value band (a tier from 0): only input = low occurs
        base = low + 1
        coefficients = {"c_input": Decimal(0), "c_cache_read": Decimal(0), "c_cache_write": Decimal(0)}
    else:
        at_base = cost(input_tokens=base)
        coefficients = {
            "c_input": cost(input_tokens=base + 1) - at_base,
            "c_cache_read": cost(input_tokens=base, cache_read_tokens=1) - at_base,
            "c_cache_write": cost(input_tokens=base, cache_write_tokens=1) - at_base,
        }
    at_base = cost(input_tokens=base)
    with_output = cost(input_tokens=base, output_tokens=1)
    coefficients["c_output"] = with_output - at_base
    coefficients["c_reasoning"] = cost(input_tokens=base, output_tokens=1, output_reasoning_tokens=1) - with_output
    for part in ("input_audio", "input_image", "input_video"):  # one input token of `base` in that modality
        coefficients[f"c_{part}"] = cost(input_tokens=base, **{f"{part}_tokens": 1}) - at_base
    coefficients["c_output_audio"] = cost(input_tokens=base, output_tokens=1, output_audio_tokens=1) - with_output
    coefficients["c_request"] = at_base - coefficients["c_input"] * base
    return coefficients


def _user_coefficients(entry: UserPrice) -> dict[str, Decimal]:
    assert entry.per_million is not None  # only entries with prices are priced by them
    p = {k: v / MILLION for k, v in entry.per_million.items()}
    return {
        "c_input": p["input"],
        "c_output": p["output"],
        "c_cache_read": p["cache_read"] - p["input"],  # input includes cache tokens
        "c_cache_write": p["cache_write"] - p["input"],
        "c_reasoning": Decimal(0),
        **{f"c_{part}": Decimal(0) for part in MODALITY_FIELDS},  # a user's price is one price per direction
        "c_request": Decimal(0),
    }


def _discounted(coefficients: dict[str, Decimal], percent: Decimal) -> dict[str, Decimal]:
    if not percent:
        return coefficients
    factor = (Decimal(100) - percent) / Decimal(100)
    return {k: v * factor for k, v in coefficients.items()}


def _cells(dates: set[datetime], times: set[int]):
    """Validity periods x time-of-day windows partitioning all time; each yields a representative instant."""
    bounds = [None, *sorted(dates), None]
    tod = [0, *sorted(t for t in times if 0 < t < DAY_US), DAY_US]
    for valid_from, valid_to in zip(bounds, bounds[1:], strict=False):
        day = valid_from or datetime(2000, 1, 1, tzinfo=UTC)
        for tod_from, tod_to in zip(tod, tod[1:], strict=False):
            yield valid_from, valid_to, tod_from, tod_to, day + timedelta(microseconds=tod_from)


def price_pair(provider: str, model: str, user_prices: list[UserPrice], table: PriceTable) -> None:
    """Add the price rows of one dataset pair to `table` (or record why it is unpriced). A user entry matches
    the pair as the span names it or as it is shown (`resolved_names`: strands-agents' `gpt-4.1` is openai's)."""
    shown_provider, shown_model = resolved_names(provider, model)
    entries = [e for e in user_prices if e.matches(provider, model) or e.matches(shown_provider or "", shown_model)]
    resolved = resolve_model(provider, model)
    bundled = None if isinstance(resolved, str) or not _has_token_price(resolved[1]) else resolved
    if bundled is None and not any(e.per_million for e in entries):
        table.unpriced[(provider, model)] = resolved if isinstance(resolved, str) else "no token price"
        return
    rows_before = len(table.rows)
    try:
        _add_rows(provider, model, entries, bundled, table)
    except ValueError as err:  # genai-prices cannot price token usage for this model's price structure
        del table.rows[rows_before:]
        table.unpriced[(provider, model)] = f"price not computable: {err}"


def _add_rows(provider: str, model: str, entries: list[UserPrice], bundled, table: PriceTable) -> None:
    dates, times = _bundled_breakpoints(bundled[1]) if bundled else (set(), set())
    dates |= {e.valid_from for e in entries if e.valid_from}
    for valid_from, valid_to, tod_from, tod_to, at in _cells(dates, times):
        # the first entry that applies at this instant (one with a valid_from applies from then on)
        entry = next((e for e in entries if e.valid_from is None or e.valid_from <= at), None)
        if entry is not None and entry.per_million is not None:
            bands: list[tuple[int, int | None]] = [(-1, None)]
            priced = ("user", provider, model)
        elif bundled is not None:
            model_price = bundled[1].get_prices(at)
            starts = _tier_starts(model_price)
            bands = list(zip([-1, *starts], [*starts, None], strict=True))
            priced = ("genai-prices", bundled[0].id, bundled[1].id)
        else:  # only a user entry from a later date: before it, this model has no price
            continue
        for band in bands:
            if entry is not None and priced[0] == "user":
                coefficients = _user_coefficients(entry)
            else:
                coefficients = _bundled_coefficients(bundled[1], bundled[0], at, band)
            coefficients = _discounted(coefficients, entry.discount_percent if entry else Decimal(0))
            # DECIMAL(38,24) holds every bundled price exactly (17 decimals per million at most today);
            # a finer one would be rounded here rather than fail
            coefficients = {k: v.quantize(COST_SCALE, rounding=ROUND_HALF_EVEN) for k, v in coefficients.items()}
            table.rows.append(
                {
                    "provider": provider,
                    "model": model,
                    "valid_from": valid_from,
                    "valid_to": valid_to,
                    "tod_from_us": tod_from,
                    "tod_to_us": tod_to,
                    "input_gt": band[0],
                    "input_le": band[1],
                    **coefficients,
                    "source": priced[0],
                    "priced_provider": priced[1],
                    "priced_model": priced[2],
                }
            )


def build_price_table(
    pairs: list[tuple[str, str]], prices_file: Path | None = None, shown: Sequence[tuple[str, str]] = ()
) -> PriceTable:
    """The price rows of every pair of `pairs` (the pairs whose usage counts), and the names every pair of
    `pairs` and `shown` (calls that reported no usage, too) is shown as (raises PriceFileError for a bad
    price file)."""
    user_prices = load_price_file(prices_file) if prices_file else []
    table = PriceTable()
    for provider, model in pairs:
        price_pair(provider, model, user_prices, table)
    for provider, model in (*pairs, *shown):
        table.names[(provider, model)] = resolved_names(provider, model)
    return table
