"""The pricing rules, in one place: genai-prices (bundled, offline) + a user price file -> a DuckDB price table.

`genai_prices.calc_price` costs ~300 us a call: far too slow per span. Instead, once per run:

1. take the DISTINCT (provider, model) pairs of the dataset's counted inference spans (a few hundred);
2. resolve each with genai-prices' own matching rules (model `equals` / `starts_with` / regex clauses,
   dated names, provider ids and `provider_match` aliases such as `aws.bedrock` or `gcp.vertex_ai`, fallback
   providers), after the user price file, and after mapping the few OpenTelemetry provider names that
   genai-prices does not know (`SEMCONV_PROVIDER_ALIASES`, e.g. `x_ai` -> `x-ai`), and where the provider
   names a framework or router or is missing, from the model's `provider/` prefix (`model_refs`). A span
   that names a provider genai-prices does not know is NOT matched by model name alone: a self-hosted
   `vllm` model that happens to share a public model's name stays unpriced;
3. export each resolved model as price rows: one row per (time cell, input-tier band) with exact DECIMAL
   coefficients per token field. A time cell is a validity period [valid_from, valid_to) (historic
   prices start at a UTC date) crossed with a time-of-day window (DeepSeek off-peak prices); an input band
   is (input_gt, input_le] of total input tokens (tiered prices: crossing a tier prices ALL tokens at the
   tier rate, genai-prices' "cliff" model). Within a cell and band genai-prices' price is affine in the
   token counts, so the coefficients are measured from genai-prices itself (`ModelInfo.calc_price` on
   unit probes, Decimal-exact), never re-derived: cost = c_input * input_tokens + c_output * output_tokens
   + c_cache_read * cache_read_tokens + c_cache_write * cache_write_tokens + c_reasoning * reasoning_tokens
   + c_request;
4. DuckDB joins the price rows and computes cost in DECIMAL(38, 24) (exact for every bundled price).

Price variants (e.g. a provider's service tiers) need a request context spans do not carry: the standard
price applies, as in `calc_price` without `price_context`.

Token semantics (the dataset's rule): input includes cache read/write tokens, output includes reasoning;
they are passed to genai-prices as `input_tokens`, `cache_read_tokens`, `cache_write_tokens`,
`output_tokens`, `output_reasoning_tokens`.

User price file (YAML), entries tried first to last, the first match wins::

    prices:
      - provider: vllm              # optional: the span's provider, case-insensitive
        model: acme-coder-13b       # the span's model, case-insensitive ... or
        # pattern: "acme-.*"        # a regular expression over the whole model name
        input: 0.20                 # USD per million tokens (input = uncached input)
        output: 0.60
        cache_read: 0.05            # optional, default: the input price
        cache_write: 0.25           # optional, default: the input price
        valid_from: 2026-11-01      # optional: applies to spans starting at or after (UTC)
      - provider: openai
        pattern: "gpt-4o.*"
        discount_percent: 15        # no prices: genai-prices' price minus 15 % (a negotiated discount)

An entry with prices overrides or adds a model; `discount_percent` applies to the entry's prices or, when
it has none, to the bundled price. Before its `valid_from` an entry does not apply (the next source does).
Models with no price are unpriced: cost NULL, counted as `unpriced_calls`, never silently zero.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from analyzer.dataset import AnalyzerError, load_sql, read_yaml_file

COST_TYPE = pa.decimal128(38, 24)
COST_SCALE = Decimal(1).scaleb(-24)
MILLION = Decimal(1_000_000)
DAY_US = 86_400_000_000

# OpenTelemetry `gen_ai.provider.name` values genai-prices does not match by itself (its own
# provider_match already covers aws.bedrock, gcp.vertex_ai, gcp.gemini, azure.ai.openai, mistral_ai ...).
SEMCONV_PROVIDER_ALIASES = {"x_ai": "x-ai", "azure.ai.inference": "azure", "gcp.gen_ai": "google"}

TOKEN_FIELDS = ("input", "output", "cache_read", "cache_write", "reasoning")
PRICE_COLUMNS = [f"c_{name}" for name in TOKEN_FIELDS] + ["c_request"]

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


@dataclass
class UserPrice:
    """One entry of the user price file."""

    provider: str | None
    model: str | None
    pattern: re.Pattern[str] | None
    per_million: dict[str, Decimal] | None  # input, output, cache_read, cache_write (USD per M tokens)
    valid_from: datetime | None
    discount_percent: Decimal

    def matches(self, provider: str, model: str) -> bool:
        if self.provider is not None and self.provider.lower() != provider.lower():
            return False
        if self.model is not None:
            return self.model.lower() == model.lower()
        return bool(self.pattern and self.pattern.fullmatch(model))


@dataclass
class PriceTable:
    """What `install_span_costs` exported: the price rows and the pairs left unpriced (with the reason)."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    unpriced: dict[tuple[str, str], str] = field(default_factory=dict)

    def arrow(self) -> pa.Table:
        return pa.Table.from_pylist(self.rows, schema=PRICE_SCHEMA)

    def unpriced_arrow(self) -> pa.Table:
        pairs = [{"provider": p, "model": m, "reason": r} for (p, m), r in sorted(self.unpriced.items())]
        return pa.Table.from_pylist(pairs, schema=UNPRICED_SCHEMA)


# ---------------------------------------------------------------- user price file


def load_price_file(path: Path) -> list[UserPrice]:
    """Parse and validate a user price file; any problem is one clear AnalyzerError."""
    doc = read_yaml_file(path, "price file")
    entries = doc.get("prices") if isinstance(doc, dict) else doc
    if not isinstance(entries, list):
        raise AnalyzerError(f"price file {path}: expected a list of entries under 'prices:'")
    return [_user_price(path, i, entry) for i, entry in enumerate(entries, start=1)]


def _user_price(path: Path, number: int, entry: object) -> UserPrice:
    where = f"price file {path}, entry {number}"
    if not isinstance(entry, dict):
        raise AnalyzerError(f"{where}: expected a mapping")
    known = {"provider", "model", "pattern", "input", "output", "cache_read", "cache_write", "valid_from",
             "discount_percent"}  # fmt: skip
    unknown = sorted(set(entry) - known)
    if unknown:
        raise AnalyzerError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(known))})")
    if ("model" in entry) == ("pattern" in entry):
        raise AnalyzerError(f"{where}: give exactly one of 'model' or 'pattern'")
    pattern = None
    if "pattern" in entry:
        try:
            pattern = re.compile(str(entry["pattern"]))
        except re.error as err:
            raise AnalyzerError(f"{where}: bad pattern: {err}") from None
    prices = None
    if "input" in entry or "output" in entry:
        if "input" not in entry or "output" not in entry:
            raise AnalyzerError(f"{where}: give both 'input' and 'output' prices (USD per million tokens)")
        prices = {k: _decimal(where, k, entry[k]) for k in ("input", "output") if k in entry}
        for key in ("cache_read", "cache_write"):
            prices[key] = _decimal(where, key, entry[key]) if key in entry else prices["input"]
    elif "cache_read" in entry or "cache_write" in entry:
        raise AnalyzerError(f"{where}: cache prices need 'input' and 'output' prices too")
    discount = _decimal(where, "discount_percent", entry.get("discount_percent", 0))
    if discount > 100:
        raise AnalyzerError(f"{where}: discount_percent must be between 0 and 100")
    if prices is None and "discount_percent" not in entry:  # discount_percent: 0 is a valid (no) discount
        raise AnalyzerError(f"{where}: give prices (input, output) or a discount_percent")
    return UserPrice(
        provider=str(entry["provider"]) if entry.get("provider") is not None else None,
        model=str(entry["model"]) if "model" in entry else None,
        pattern=pattern,
        per_million=prices,
        valid_from=_valid_from(where, entry.get("valid_from")),
        discount_percent=discount,
    )


def _decimal(where: str, key: str, value: object) -> Decimal:
    if isinstance(value, bool):
        raise AnalyzerError(f"{where}: {key} must be a non-negative number")
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise AnalyzerError(f"{where}: {key} must be a non-negative number, not {value!r}") from None
    if not number.is_finite() or number < 0:
        raise AnalyzerError(f"{where}: {key} must be a non-negative number, not {value!r}")
    return number


def _valid_from(where: str, value: object) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if isinstance(value, date):
        return datetime.combine(value, time(), tzinfo=UTC)
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise AnalyzerError(f"{where}: valid_from {value!r} is not an ISO date") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


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
    """Add the price rows of one dataset pair to `table` (or record why it is unpriced)."""
    entries = [e for e in user_prices if e.matches(provider, model)]
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


def build_price_table(pairs: list[tuple[str, str]], prices_file: Path | None = None) -> PriceTable:
    user_prices = load_price_file(prices_file) if prices_file else []
    table = PriceTable()
    for provider, model in pairs:
        price_pair(provider, model, user_prices, table)
    return table


# ---------------------------------------------------------------- DuckDB views


def install_span_costs(con: duckdb.DuckDBPyConnection, prices_file: Path | None = None) -> PriceTable:
    """Create view `span_costs` over `counted_spans` (from `analyzer.dataset.open_dataset`).

    span_costs(trace_id, span_id, provider, model, cost_usd DECIMAL(38,24), priced BOOLEAN, price_source,
    priced_model, reported_cost_usd): one row per span whose usage counts (`counted`). `cost_usd` is NULL
    and `priced` false when the model has no price. Also tables `price_rows` and `unpriced_models`.
    """
    pairs = con.execute(load_sql("prices_pairs.sql")).fetchall()
    table = build_price_table([(p, m) for p, m in pairs], prices_file)
    prices = table.arrow()
    unpriced = table.unpriced_arrow()
    con.register("_price_rows_arrow", prices)
    con.register("_unpriced_arrow", unpriced)
    con.execute("CREATE OR REPLACE TEMP TABLE price_rows AS SELECT * FROM _price_rows_arrow")
    con.execute("CREATE OR REPLACE TEMP TABLE unpriced_models AS SELECT * FROM _unpriced_arrow")
    con.unregister("_price_rows_arrow")
    con.unregister("_unpriced_arrow")
    con.execute(load_sql("cost_span_costs.sql"))
    return table
