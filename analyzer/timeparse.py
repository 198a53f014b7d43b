"""Time arguments of the CLI: ISO dates/datetimes or relative forms like `7d`, `24h`, `30m`."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from analyzer.dataset import AnalyzerError

_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|h|d|w)$")
_UNIT = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_time(value: str | None, *, now: datetime | None = None) -> datetime | None:
    """`None` -> None; '7d' -> now - 7 days; ISO date or datetime (naive = UTC) -> aware UTC datetime."""
    if value is None or value == "":
        return None
    text = value.strip()
    match = _RELATIVE.match(text)
    if match:
        base = now or datetime.now(UTC)
        return base - timedelta(**{_UNIT[match.group(2)]: float(match.group(1))})
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise AnalyzerError(
            f"bad time {value!r}: use an ISO date (2026-11-01), datetime (2026-11-01T12:00Z) or 7d/24h/30m"
        ) from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


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
