"""The console's filters: what a page's URL carries, parsed once, and the CLI command that asks the same.

A page's URL is its whole state (a shared link reproduces the view): `range` (24h, 7d, 30d, 90d, all) or
`since` / `until` (the CLI's forms: ISO dates and times, or 7d / 24h before now), plus each page's own
filters. The presets count back from the newest call in the dataset, not from now, so a dataset from last
month opens on its last week rather than on nothing: `7d` is the 7 UTC days up to and including the newest
call's day (`--since <that midnight>`), `24h` the 24 hours up to its hour. The period before (top movers)
is as long and ends where the window starts.

Every number a page shows comes from a query function the CLI calls with the same arguments; `Cli` renders
that command (`analyze cost --by agent --since 2026-11-03T00:00:00Z --data ...`) so a reader can check it.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

from analyzer.dataset import AnalyzerError
from analyzer.timeparse import TimeRange

RANGES: dict[str, timedelta | None] = {
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
    "90d": timedelta(days=90),
    "all": None,
}
RANGE_LABELS = {"24h": "last 24 hours", "7d": "last 7 days", "30d": "last 30 days", "90d": "last 90 days",
                "all": "all time", "custom": "custom"}  # fmt: skip
DEFAULT_RANGE = "7d"


def iso(moment: datetime) -> str:
    """A UTC instant as the CLI takes it and people read it: 2026-11-03T00:00:00Z."""
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Window:
    """The page's time range: how it was asked (`key`, the URL's text) and what it resolved to."""

    key: str  # a RANGES key, or "custom"
    range: TimeRange
    previous: TimeRange | None  # the period before, as long (None: open-ended on both sides)
    newest: datetime | None  # the dataset's newest call (None: no calls)
    since_text: str = ""  # custom: the URL's values as typed
    until_text: str = ""

    @property
    def label(self) -> str:
        return RANGE_LABELS[self.key]

    def describe(self) -> str:
        """'2026-11-03 00:00 UTC .. newest data (2026-11-05 14:02 UTC)' and the like."""
        since = self.range.since.strftime("%Y-%m-%d %H:%M UTC") if self.range.since else "the first data"
        if self.range.until:
            until = self.range.until.strftime("%Y-%m-%d %H:%M UTC")
        else:
            until = "now" + (f" (newest data {self.newest.strftime('%Y-%m-%d %H:%M UTC')})" if self.newest else "")
        return f"{since} .. {until}"

    def cli_args(self) -> list[str]:
        """--since / --until as exact instants: the CLI answers for the same window."""
        args = []
        if self.range.since:
            args += ["--since", iso(self.range.since)]
        if self.range.until:
            args += ["--until", iso(self.range.until)]
        return args

    def query(self) -> dict[str, str]:
        """The URL parameters that ask for this window again."""
        if self.key == "custom":
            return {k: v for k, v in (("since", self.since_text), ("until", self.until_text)) if v}
        return {"range": self.key}


def resolve_window(range_key: str | None, since: str | None, until: str | None, newest: datetime | None) -> Window:
    """The window a page's URL asks for; `since`/`until` (custom) win over `range`."""
    if since or until:
        window = TimeRange.parse(since, until)
        previous = None
        if window.since is not None:
            end = window.until or (max(newest, window.since) if newest else None)
            if end is not None and end > window.since:
                previous = TimeRange(window.since - (end - window.since), window.since)
        return Window("custom", window, previous, newest, since or "", until or "")
    key = range_key or DEFAULT_RANGE
    if key not in RANGES:
        raise AnalyzerError(f"unknown range {key!r}: use one of {', '.join(RANGES)} or since/until")
    length = RANGES[key]
    if length is None or newest is None:
        return Window(key, TimeRange(), None, newest)
    if length < timedelta(days=1):
        anchor = newest.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    else:
        anchor = newest.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    start = anchor - length
    return Window(key, TimeRange(start, None), TimeRange(start - length, start), newest)


@dataclass(frozen=True)
class Cli:
    """The `analyze` command that answers with the same figures as a page section."""

    args: tuple[str, ...]

    @classmethod
    def of(cls, *args: str, data: Path, prices: Path | None = None, gpu_prices: Path | None = None) -> Cli:
        extra = ["--data", str(data)]
        if prices:
            extra += ["--prices", str(prices)]
        if gpu_prices:
            extra += ["--gpu-prices", str(gpu_prices)]
        return cls((*args, *extra))

    def __str__(self) -> str:
        return "analyze " + " ".join(shlex.quote(a) for a in self.args)


def url(path: str, params: dict[str, object]) -> str:
    """A console URL with its filters (None and empty values left out)."""
    kept = {k: v for k, v in params.items() if v is not None and v != "" and v is not False}
    return path + ("?" + urlencode(kept, doseq=True) if kept else "")
