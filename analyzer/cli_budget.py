"""`analyze budget`: spend against budgets, burn rate, forecast, breach dates; exit 3 when a budget is breached
or forecast to be (cron, CI). `--emit prometheus-rules`: the burn-rate alerts for the live metrics."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
import yaml

from analyzer.analysis import Analysis
from analyzer.budgets import COLUMNS, budget_status, load_budgets, prometheus_rules
from analyzer.cli_options import DataOption, FormatOption, GpuPricesOption, PricesOption
from analyzer.output import OutputFormat, TableLayout, render
from analyzer.timeparse import parse_time

EXIT_OVER_BUDGET = 3


class Emit(StrEnum):
    prometheus_rules = "prometheus-rules"


def budget(
    budgets: Annotated[Path, typer.Option("--budgets", help="Budgets YAML (format: analyzer/budgets.py).")],
    data: DataOption = None,
    at: Annotated[
        str | None, typer.Option("--at", help="Evaluate as of this time (ISO, or 2d for two days ago); default now.")
    ] = None,
    emit: Annotated[
        Emit | None,
        typer.Option(
            "--emit",
            help="prometheus-rules: a PrometheusRule of multi-window burn-rate alerts over the receivers' live "
            "agentmeter_genai_cost_usd_total, one set per budget (no dataset read).",
        ),
    ] = None,
    rule_name: Annotated[str, typer.Option(help="metadata.name of the emitted PrometheusRule.")] = "agentmeter-budgets",
    prices: PricesOption = None,
    gpu_prices: GpuPricesOption = None,
    fmt: FormatOption = OutputFormat.table,
) -> None:
    """Spend so far in each budget's period (total_cost_usd: tokens + GPU), burn rate, forecast for the period's
    end and the date the budget is (or is forecast to be) breached. Exit code 3 when any budget is breached
    or forecast to be."""
    found = load_budgets(budgets)
    if emit is Emit.prometheus_rules:
        doc, skipped = prometheus_rules(found, rule_name)
        notes = [
            "agentmeter budget alerts (analyze budget --emit prometheus-rules): the SRE workbook's multi-window,",
            "multi-burn-rate alerts over the receivers' live token cost (agentmeter_genai_cost_usd_total).",
            *(f"not alerted: {b.title} ({b.scope}): a label is not a label of the live metrics" for b in skipped),
        ]
        sys.stdout.write("".join(f"# {line}\n" for line in notes) + yaml.safe_dump(doc, sort_keys=False, width=1000))
        return
    moment = parse_time(at) or datetime.now(UTC)
    analysis = Analysis.open(data, prices, gpu_prices)
    statuses = [budget_status(analysis, b, moment) for b in found]
    layout = TableLayout(
        optional=("period_start", "scope", "breached_at", "forecast_breach_at"),
        times=("period_start", "breached_at", "forecast_breach_at"),
    )
    render([s.row() for s in statuses], fmt, title=f"Budgets at {moment:%Y-%m-%d %H:%M} UTC", columns=COLUMNS,
           layout=layout)  # fmt: skip
    if any(s.status != "ok" for s in statuses):
        raise typer.Exit(EXIT_OVER_BUDGET)


def register(app: typer.Typer) -> None:
    app.command("budget")(budget)
