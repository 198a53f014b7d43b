"""The user price file (`--prices FILE`, YAML): override or add models, negotiated discounts.

Entries are tried first to last, the first match wins::

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
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import Decimal, InvalidOperation
from pathlib import Path

import yaml

from collector_ext.user_error import UserError

KNOWN_KEYS = frozenset(
    {"provider", "model", "pattern", "input", "output", "cache_read", "cache_write", "valid_from", "discount_percent"}
)


class PriceFileError(UserError):
    """A price file that cannot be read or is not valid: one sentence naming the file and the entry."""


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


def load_price_file(path: Path) -> list[UserPrice]:
    """Parse and validate a user price file; any problem is one PriceFileError."""
    try:
        doc = yaml.safe_load(Path(path).read_text())
    except OSError as err:
        raise PriceFileError(f"cannot read price file {path}: {err.strerror or err}") from None
    except yaml.YAMLError as err:
        raise PriceFileError(f"price file {path} is not valid YAML: {str(err).splitlines()[0]}") from None
    entries = doc.get("prices") if isinstance(doc, dict) else doc
    if not isinstance(entries, list):
        raise PriceFileError(f"price file {path}: expected a list of entries under 'prices:'")
    return [_user_price(path, i, entry) for i, entry in enumerate(entries, start=1)]


def _user_price(path: Path, number: int, entry: object) -> UserPrice:
    where = f"price file {path}, entry {number}"
    if not isinstance(entry, dict):
        raise PriceFileError(f"{where}: expected a mapping")
    unknown = sorted(set(entry) - KNOWN_KEYS)
    if unknown:
        raise PriceFileError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(KNOWN_KEYS))})")
    if ("model" in entry) == ("pattern" in entry):
        raise PriceFileError(f"{where}: give exactly one of 'model' or 'pattern'")
    pattern = None
    if "pattern" in entry:
        try:
            pattern = re.compile(str(entry["pattern"]))
        except re.error as err:
            raise PriceFileError(f"{where}: bad pattern: {err}") from None
    prices = None
    if "input" in entry or "output" in entry:
        if "input" not in entry or "output" not in entry:
            raise PriceFileError(f"{where}: give both 'input' and 'output' prices (USD per million tokens)")
        prices = {k: _decimal(where, k, entry[k]) for k in ("input", "output") if k in entry}
        for key in ("cache_read", "cache_write"):
            prices[key] = _decimal(where, key, entry[key]) if key in entry else prices["input"]
    elif "cache_read" in entry or "cache_write" in entry:
        raise PriceFileError(f"{where}: cache prices need 'input' and 'output' prices too")
    discount = _decimal(where, "discount_percent", entry.get("discount_percent", 0))
    if discount > 100:
        raise PriceFileError(f"{where}: discount_percent must be between 0 and 100")
    if prices is None and "discount_percent" not in entry:  # discount_percent: 0 is a valid (no) discount
        raise PriceFileError(f"{where}: give prices (input, output) or a discount_percent")
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
        raise PriceFileError(f"{where}: {key} must be a non-negative number")
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise PriceFileError(f"{where}: {key} must be a non-negative number, not {value!r}") from None
    if not number.is_finite() or number < 0:
        raise PriceFileError(f"{where}: {key} must be a non-negative number, not {value!r}")
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
        raise PriceFileError(f"{where}: valid_from {value!r} is not an ISO date") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
