"""The Prices page: the price in force for every model seen, what it cost and the effective price paid
(`analyze prices`), the unpriced models, and the price files in use (genai-prices' bundled data, --prices,
--gpu-prices)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from analyzer.analysis import Analysis
from analyzer.console.filters import Cli, Window, resolve_window
from analyzer.console.pages import Inputs, Section, Source
from analyzer.gpu import GpuPrices, example_prices_file
from analyzer.price_list import PriceSources, price_list, price_sources

MAX_FILE_CHARS = 20_000  # a price file longer than this is shown cut (it is the user's own file)


@dataclass(frozen=True)
class PriceFilters:
    window: Window
    source: Source

    def params(self) -> dict[str, Any]:
        return self.window.query()


def parse(inputs: Inputs) -> PriceFilters:
    window = resolve_window(inputs.get("range"), inputs.get("since"), inputs.get("until"), inputs.newest)
    return PriceFilters(window, inputs.source)


@dataclass(frozen=True)
class Prices:
    rows: list[dict[str, Any]]
    unpriced: list[dict[str, Any]]
    sources: PriceSources
    prices_text: str | None  # the --prices file's text
    gpu_prices: GpuPrices
    gpu_prices_text: str  # the --gpu-prices file's text, or the defaults' (gpu_prices.example.yaml)
    cli: list[Cli]


def _read(path: Path) -> str:
    try:
        text = path.read_text()
    except OSError as err:
        return f"# cannot read {path}: {err.strerror or err}"
    return text if len(text) <= MAX_FILE_CHARS else text[:MAX_FILE_CHARS] + "\n# ... (cut)"


def prices(analysis: Analysis, f: PriceFilters) -> Prices:
    rows = price_list(analysis, f.window.range)
    sources = price_sources(analysis)
    gpu_file = sources.gpu_prices_file or example_prices_file()
    return Prices(
        [r for r in rows if r["source"] is not None],
        [r for r in rows if r["source"] is None],
        sources,
        _read(sources.prices_file) if sources.prices_file else None,
        GpuPrices.load(sources.gpu_prices_file),
        _read(gpu_file),
        [f.source.cli("prices", *f.window.cli_args(), "--format", "json")],
    )


SECTIONS = (Section("prices", "Prices", "prices.html", prices),)
