"""Time arguments of the CLI and the API: ISO dates/datetimes or relative forms like `7d`, `24h`, `30m`,
and the time range they make (`--since` must come before `--until`)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from analyzer.dataset import AnalyzerError

_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|h|d|w)$")
_UNIT = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
TIME_HELP = "ISO date/datetime (2026-11-01, 2026-11-01T12:00Z) or relative (7d, 24h, 30m)"


def parse_time(value: str | None, *, now: datetime | None = None) -> datetime | None:
    """`None` -> None; '7d' -> now - 7 days; ISO date or datetime (naive = UTC) -> aware UTC datetime."""
    if value is None or value == "":
        return None
    text = value.strip()
    match = _RELATIVE.match(text)
    if match:
        base = now or datetime.now(UTC)
        try:
            return base - timedelta(**{_UNIT[match.group(2)]: float(match.group(1))})
        except (OverflowError, ValueError):  # 99999999d: before year 1
            raise AnalyzerError(f"bad time {value!r}: too far in the past") from None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise AnalyzerError(f"bad time {value!r}: use an {TIME_HELP}") from None
    try:
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except OverflowError:  # 9999-12-31T23:00-05:00 is past year 9999 in UTC
        raise AnalyzerError(f"bad time {value!r}: out of range") from None


@dataclass(frozen=True)
class TimeRange:
    """[since, until): either end open (None). An empty or inverted range is a user error."""

    since: datetime | None = None
    until: datetime | None = None

    def __post_init__(self) -> None:
        if self.since is not None and self.until is not None and self.until <= self.since:
            raise AnalyzerError(
                f"--since {_iso(self.since)} is not before --until {_iso(self.until)}: nothing can match"
            )

    @classmethod
    def parse(cls, since: str | None = None, until: str | None = None, *, now: datetime | None = None) -> TimeRange:
        now = now or datetime.now(UTC)
        return cls(parse_time(since, now=now), parse_time(until, now=now))

    @property
    def is_open(self) -> bool:
        return self.since is None and self.until is None

    def describe(self) -> str:
        """'between A and B', 'since A', 'before B', or '' for all time."""
        if self.since and self.until:
            return f"between {_iso(self.since)} and {_iso(self.until)}"
        if self.since:
            return f"since {_iso(self.since)}"
        if self.until:
            return f"before {_iso(self.until)}"
        return ""


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def parse_duration(value: str) -> float:
    """'8s', '2m', '1.5h' or a bare number of seconds -> seconds."""
    text = value.strip()
    try:
        return float(text)
    except ValueError:
        pass
    match = _RELATIVE.match(text)
    if not match:
        raise AnalyzerError(f"bad duration {value!r}: use seconds or a form like 8s, 5m, 1h")
    return timedelta(**{_UNIT[match.group(2)]: float(match.group(1))}).total_seconds()
