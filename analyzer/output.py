"""Rendering result rows for people (Rich tables with totals) and machines (JSON, CSV)."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from rich.console import Console
from rich.table import Table


class OutputFormat(StrEnum):
    table = "table"
    json = "json"
    csv = "csv"


def _plain(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, bytes):
        return value.hex()
    return value


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float | Decimal):
        return f"{value:,.4f}" if abs(value) < 1000 else f"{value:,.2f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(_plain(value))


def render(
    rows: Sequence[dict[str, Any]],
    fmt: OutputFormat,
    *,
    title: str | None = None,
    totals: Sequence[str] = (),
    columns: Sequence[str] | None = None,
    width: int | None = None,
) -> None:
    """Print rows; `totals` names numeric columns summed in a footer of the table format.

    `width`: the table format's console width (default: the terminal's; wide tables piped to a file
    or another process need more than the 80 columns Rich assumes there)."""
    columns = list(columns or (rows[0].keys() if rows else []))
    if fmt is OutputFormat.json:
        json.dump([{c: _plain(r.get(c)) for c in columns} for r in rows], sys.stdout, indent=2)
        sys.stdout.write("\n")
        return
    if fmt is OutputFormat.csv:
        writer = csv.DictWriter(sys.stdout, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({c: _plain(row.get(c)) for c in columns})
        return
    table = Table(title=title, show_footer=bool(totals and rows))
    for i, column in enumerate(columns):
        numeric = bool(rows) and isinstance(rows[0].get(column), int | float | Decimal)
        footer = ""
        if column in totals:
            footer = _cell(sum((r.get(column) or 0) for r in rows))
        elif i == 0 and totals:
            footer = "total"
        table.add_column(column, justify="right" if numeric else "left", footer=footer)
    for row in rows:
        table.add_row(*(_cell(row.get(c)) for c in columns))
    Console(width=width).print(table)
