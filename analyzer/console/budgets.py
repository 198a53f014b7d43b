"""The Budgets page: each budget of the budgets file (`analyze serve --budgets`, format: analyzer/budgets.py)
with its spend, burn rate, forecast and breach dates as of a moment (`analyze budget --at`), and the tasks
that ran away in the time range (`analyze runaway`, its limits adjustable in the URL as the CLI's options).

The budgets are evaluated as of `at` (default: now, to the second, so the CLI command shown asks for the
same instant); the runaway tasks are those started in the page's time range.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from analyzer.analysis import Analysis
from analyzer.budgets import Budget, budget_status, load_budgets
from analyzer.console.filters import Cli, Window, iso, resolve_window
from analyzer.console.pages import Inputs, Section, Source
from analyzer.dataset import AnalyzerError
from analyzer.runaway import runaway_tasks
from analyzer.timeparse import parse_time
from collector_ext.traces.runaway import REASONS, RunawayThresholds

# The runaway limits a URL may set, as `analyze runaway`'s options name them (max_llm_calls -> --max-llm-calls).
LIMITS = tuple(f"max_{reason}" for reason in REASONS)
DEFAULT_LIMITS = RunawayThresholds()


@dataclass(frozen=True)
class BudgetFilters:
    window: Window  # the runaway tasks' start
    at: datetime  # the budgets' moment
    at_text: str  # as the URL gave it ("" when defaulted to now)
    budgets: tuple[Budget, ...]  # the budgets file as read for this request (a change is a new answer)
    thresholds: RunawayThresholds
    source: Source

    def changed_limits(self) -> dict[str, int | float]:
        """The limits that are not the defaults, by URL parameter name."""
        return {
            f"max_{reason}": getattr(self.thresholds, reason)
            for reason in REASONS
            if getattr(self.thresholds, reason) != getattr(DEFAULT_LIMITS, reason)
        }

    def params(self) -> dict[str, Any]:
        return {**self.window.query(), "at": self.at_text, **self.changed_limits()}

    def limit_args(self) -> list[str]:
        """The same limits as `analyze runaway` options (max_llm_calls -> --max-llm-calls)."""
        return [
            arg for name, value in self.changed_limits().items() for arg in (f"--{name.replace('_', '-')}", str(value))
        ]


def _limit(name: str, text: str) -> int | float:
    kind = float if name == "max_cost_usd" else int
    try:
        value = kind(text)
    except ValueError:
        raise AnalyzerError(f"bad {name} {text!r}: a {'number' if kind is float else 'whole number'}") from None
    if (kind is int and value < 1) or value < 0:
        raise AnalyzerError(f"bad {name} {text!r}: {'>= 1' if kind is int else '>= 0'}")
    return value


def parse(inputs: Inputs) -> BudgetFilters:
    window = resolve_window(inputs.get("range"), inputs.get("since"), inputs.get("until"), inputs.newest)
    at_text = inputs.get("at") or ""
    at = (parse_time(at_text) or datetime.now(UTC)).replace(microsecond=0)  # to the second: what --at takes
    budgets = tuple(load_budgets(inputs.source.budgets)) if inputs.source.budgets else ()
    given: dict[str, Any] = {
        name.removeprefix("max_"): _limit(name, text) for name in LIMITS if (text := inputs.get(name)) is not None
    }
    return BudgetFilters(window, at, at_text, budgets, replace(DEFAULT_LIMITS, **given), inputs.source)


@dataclass(frozen=True)
class Budgets:
    rows: list[dict[str, Any]]  # BudgetStatus.row(): analyze budget's JSON rows
    file: Path | None
    cli: list[Cli]


def budgets(analysis: Analysis, f: BudgetFilters) -> Budgets:
    if f.source.budgets is None:
        return Budgets([], None, [])
    rows = [budget_status(analysis, budget, f.at).row() for budget in f.budgets]
    args = ("budget", "--budgets", str(f.source.budgets), "--at", iso(f.at), "--format", "json")
    return Budgets(rows, f.source.budgets, [f.source.cli(*args)])


@dataclass(frozen=True)
class Runaway:
    rows: list[dict[str, Any]]  # RunawayRow.row(): analyze runaway's JSON rows
    limits: dict[str, float]  # reason -> the configured threshold
    cli: list[Cli]


def runaway(analysis: Analysis, f: BudgetFilters) -> Runaway:
    rows = [r.row() for r in runaway_tasks(analysis, f.thresholds, f.window.range)]
    # `analyze runaway` prices tokens but charges no GPU time: no --gpu-prices
    command = Cli.of(
        "runaway", *f.window.cli_args(), *f.limit_args(), "--format", "json", data=f.source.data,
        prices=f.source.prices,
    )  # fmt: skip
    return Runaway(rows, {reason: f.thresholds.threshold(reason) for reason in REASONS}, [command])


SECTIONS = (
    Section("budgets", "Budgets", "budgets_status.html", budgets),
    Section("runaway", "Runaway tasks", "budgets_runaway.html", runaway),
)
