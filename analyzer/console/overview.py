"""The Overview page: what the agents cost in the chosen time range and how that moved.

- headline: `analyze cost` without --by (tokens + GPU = total, calls, tokens, unpriced calls), beside the
  previous period of the same length;
- trend: `analyze cost --by <day|...> --by <group>` as stacked bars (the top groups, the rest as "other"),
  and `analyze cost --by <group>` as a table;
- top movers: `analyze cost --by <group>` in the window against the period before;
- attention: unpriced calls by model (with the price-file entry to add) and calls that reported no usage.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

import plotly.graph_objects as go

from analyzer.analysis import Analysis
from analyzer.console.charts import figure_json, number
from analyzer.console.filters import Cli, Window, iso, resolve_window
from analyzer.console.pages import Inputs, Section, Source
from analyzer.cost import GROUP_KEYS, LABEL_PREFIX, TIME_KEYS, CostQuery, calls_without_usage, check_keys, cost_rows
from analyzer.dataset import AnalyzerError
from analyzer.timeparse import TimeRange

GROUPS = tuple(key for key in GROUP_KEYS if key not in TIME_KEYS)  # agent, task, model, ... (+ label:KEY)
BUCKETS = tuple(TIME_KEYS)  # hour, day, week, month
TOP_GROUPS = 8  # stacked in the trend; the rest as "other"
TOP_MOVERS = 5
HEADLINE = ("total_cost_usd", "token_cost_usd", "gpu_busy_cost_usd", "llm_calls", "input_tokens", "output_tokens",
            "unpriced_calls")  # fmt: skip


@dataclass(frozen=True)
class OverviewFilters:
    window: Window
    group: str  # a GROUPS key or label:KEY
    bucket: str  # a BUCKETS key
    source: Source

    @property
    def label_key(self) -> str:
        return self.group[len(LABEL_PREFIX) :] if self.group.startswith(LABEL_PREFIX) else ""

    def query(self) -> dict[str, str]:
        group = "label" if self.label_key else self.group
        return {**self.window.query(), "by": group, "label": self.label_key, "every": self.bucket}


def parse(inputs: Inputs) -> OverviewFilters:
    window = resolve_window(inputs.get("range"), inputs.get("since"), inputs.get("until"), inputs.newest)
    group = inputs.get("by") or "agent"
    if group == "label":
        key = (inputs.get("label") or "").strip()
        if not key:
            raise AnalyzerError("group by label: name the label, e.g. team")
        group = LABEL_PREFIX + key
    check_keys([group])
    if group in TIME_KEYS:
        raise AnalyzerError(f"group by {group}: choose the time buckets with 'every', and a group such as agent")
    bucket = inputs.get("every") or _auto_bucket(window)
    if bucket not in BUCKETS:
        raise AnalyzerError(f"unknown buckets {bucket!r}: use one of {', '.join(BUCKETS)}")
    return OverviewFilters(window, group, bucket, inputs.source)


def _auto_bucket(window: Window) -> str:
    """Hours for a day or two of data, days up to a quarter, else weeks."""
    since = window.range.since
    if since is None and window.newest is not None:
        return "day"
    if since is None or window.newest is None:
        return "day"
    span = (window.range.until or window.newest) - since
    return "hour" if span <= timedelta(days=2) else "day" if span <= timedelta(days=92) else "week"


# -------------------------------------------------------------------------------- headline


@dataclass(frozen=True)
class Card:
    name: str
    title: str
    value: Any
    previous: Any  # the period before (None: no previous period)
    money: bool

    @property
    def change(self) -> float | None:
        """Relative change against the previous period (None: nothing to compare)."""
        if self.previous is None or not self.previous or self.value is None:
            return None
        return (float(self.value) - float(self.previous)) / float(self.previous)


@dataclass(frozen=True)
class Headline:
    cards: list[Card]
    calls_without_usage: int
    cli: list[Cli]


TITLES = {
    "total_cost_usd": "Total cost",
    "token_cost_usd": "Tokens",
    "gpu_busy_cost_usd": "GPU busy time",
    "llm_calls": "LLM calls",
    "input_tokens": "Input tokens",
    "output_tokens": "Output tokens",
    "unpriced_calls": "Unpriced calls",
}


def headline(analysis: Analysis, f: OverviewFilters) -> Headline:
    now = cost_rows(analysis, CostQuery(by=[], window=f.window.range)).rows[0]
    before = cost_rows(analysis, CostQuery(by=[], window=f.window.previous)).rows[0] if f.window.previous else None
    cards = [
        Card(name, TITLES[name], now[name], before[name] if before else None, name.endswith("_usd"))
        for name in HEADLINE
    ]
    gaps = now["calls_without_usage"]
    cli = [f.source.cli("cost", *f.window.cli_args(), "--format", "json")]
    if f.window.previous:
        cli.append(f.source.cli("cost", *_previous_args(f.window.previous), "--format", "json"))
    return Headline(cards, gaps, cli)


# -------------------------------------------------------------------------------- trend


@dataclass(frozen=True)
class Trend:
    figure: str | None  # plotly JSON; None: no calls in the window
    rows: list[dict[str, Any]]  # cost by group (the table), most expensive first
    total: Any
    group: str
    cli: list[Cli]


def trend(analysis: Analysis, f: OverviewFilters) -> Trend:
    by_group = cost_rows(analysis, CostQuery(by=[f.group], window=f.window.range)).rows
    series = cost_rows(analysis, CostQuery(by=[f.bucket, f.group], window=f.window.range)).rows
    top = [row[f.group] for row in by_group[:TOP_GROUPS]]
    buckets = list(dict.fromkeys(row[f.bucket] for row in series))
    figure = None
    if series:
        fig = go.Figure()
        for name in top:
            values = {row[f.bucket]: row["total_cost_usd"] for row in series if row[f.group] == name}
            fig.add_bar(name=_name(name), x=buckets, y=[number(values.get(b)) for b in buckets])
        rest = {b: Decimal(0) for b in buckets}
        for row in series:
            if row[f.group] not in top and row["total_cost_usd"] is not None:
                rest[row[f.bucket]] += Decimal(row["total_cost_usd"])
        if any(rest.values()):
            fig.add_bar(name="other", x=buckets, y=[number(rest[b]) for b in buckets], marker_color="#bbb")
        fig.update_layout(barmode="stack", yaxis_title="USD (tokens + GPU)", xaxis_title=f"{f.bucket} (UTC)")
        figure = figure_json(fig, xaxis={"type": "category"})
    total = sum((Decimal(r["total_cost_usd"]) for r in by_group if r["total_cost_usd"] is not None), Decimal(0))
    cli = [
        f.source.cli("cost", "--by", f.bucket, "--by", f.group, *f.window.cli_args(), "--format", "json"),
        f.source.cli("cost", "--by", f.group, *f.window.cli_args(), "--format", "json"),
    ]
    return Trend(figure, by_group, total, f.group, cli)


def _name(value: Any) -> str:
    return "(none)" if value is None else str(value)


# -------------------------------------------------------------------------------- movers


@dataclass(frozen=True)
class Mover:
    group: Any
    now: Any
    before: Any
    change: Decimal

    @property
    def new(self) -> bool:
        return self.before is None and self.now is not None


@dataclass(frozen=True)
class Movers:
    up: list[Mover]
    down: list[Mover]
    group: str
    compared: bool  # False: no previous period (all time)
    cli: list[Cli]


def movers(analysis: Analysis, f: OverviewFilters) -> Movers:
    if f.window.previous is None:
        return Movers([], [], f.group, False, [])
    now = {
        r[f.group]: r["total_cost_usd"]
        for r in cost_rows(analysis, CostQuery(by=[f.group], window=f.window.range)).rows
    }
    before = {
        r[f.group]: r["total_cost_usd"]
        for r in cost_rows(analysis, CostQuery(by=[f.group], window=f.window.previous)).rows
    }
    moved = [
        Mover(g, now.get(g), before.get(g), Decimal(now.get(g) or 0) - Decimal(before.get(g) or 0))
        for g in dict.fromkeys([*now, *before])
    ]
    up = sorted((m for m in moved if m.change > 0), key=lambda m: (-m.change, _name(m.group)))[:TOP_MOVERS]
    down = sorted((m for m in moved if m.change < 0), key=lambda m: (m.change, _name(m.group)))[:TOP_MOVERS]
    prev = f.window.previous
    cli = [
        f.source.cli("cost", "--by", f.group, *f.window.cli_args(), "--format", "json"),
        f.source.cli("cost", "--by", f.group, *_previous_args(prev), "--format", "json"),
    ]
    return Movers(up, down, f.group, True, cli)


# -------------------------------------------------------------------------------- attention


@dataclass(frozen=True)
class UnpricedModel:
    provider: str | None
    model: str
    reason: str
    unpriced_calls: int


@dataclass(frozen=True)
class Attention:
    unpriced_calls: int
    llm_calls: int
    unpriced: list[UnpricedModel]
    price_entries: str  # YAML entries for a --prices file, one per unpriced model
    without_usage: list[dict[str, Any]]
    cli: list[Cli]


def attention(analysis: Analysis, f: OverviewFilters) -> Attention:
    figures = cost_rows(analysis, CostQuery(by=[], window=f.window.range)).rows[0]
    reasons = analysis.prices.unpriced
    # as the spans name them: what a --prices entry matches, and the key of the reasons
    pairs = cost_rows(analysis, CostQuery(by=["span_provider", "span_model"], window=f.window.range)).rows
    unpriced = [
        UnpricedModel(
            r["span_provider"],
            r["span_model"],
            reasons.get((r["span_provider"] or "", r["span_model"] or ""), "no price"),
            r["unpriced_calls"],
        )  # fmt: skip
        for r in pairs
        if r["unpriced_calls"]
    ]
    unpriced.sort(key=lambda m: (-m.unpriced_calls, m.model))
    entries = "".join(
        (f"  - provider: {m.provider}\n" if m.provider else "  - ")
        + ("    " if m.provider else "")
        + f"model: {m.model}\n    input: 0.00    # USD per million input tokens: your price\n"
        "    output: 0.00   # USD per million output tokens\n"
        for m in unpriced
    )
    cli = [
        f.source.cli("cost", "--by", "span_provider", "--by", "span_model", *f.window.cli_args(), "--format", "json"),
        f.source.cli("prices", *f.window.cli_args(), "--format", "json"),
    ]
    return Attention(
        figures["unpriced_calls"],
        figures["llm_calls"],
        unpriced,
        "prices:\n" + entries if entries else "",
        calls_without_usage(analysis, f.window.range),
        cli,
    )


SECTIONS = (
    Section("headline", "Totals", "overview_headline.html", headline),
    Section("trend", "Cost over time", "overview_trend.html", trend),
    Section("movers", "Top movers", "overview_movers.html", movers),
    Section("attention", "Needs attention", "overview_attention.html", attention),
)


def _previous_args(previous: TimeRange) -> list[str]:
    """--since / --until of the period before (resolve_window bounds it on both sides)."""
    assert previous.since is not None and previous.until is not None
    return ["--since", iso(previous.since), "--until", iso(previous.until)]
