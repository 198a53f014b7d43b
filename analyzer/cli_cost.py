"""`analyze cost`: what each agent, task, model, provider, namespace, service, conversation or day cost."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from analyzer.cost import GROUP_KEYS, METRICS, CostQuery, cost_rows
from analyzer.dataset import open_dataset
from analyzer.output import OutputFormat, render

KEYS_HELP = ", ".join(GROUP_KEYS)
TABLE_WIDTH = 240


def cost(
    by: Annotated[
        list[str], typer.Option("--by", help=f"Group by KEY (repeat for several): {KEYS_HELP}.", metavar="KEY")
    ],
    data: Annotated[
        Path | None, typer.Option("--data", help="Dataset directory (default $AGENTMETER_DATA or ./agentmeter-data).")
    ] = None,
    since: Annotated[str | None, typer.Option(help="Calls starting at or after: ISO date/datetime or 7d, 24h.")] = None,
    until: Annotated[str | None, typer.Option(help="Calls starting before: ISO date/datetime or 7d, 24h.")] = None,
    where: Annotated[
        list[str] | None,
        typer.Option(
            "--where",
            help="Only rows with KEY=VALUE (repeatable), e.g. --where namespace=team-data.",
            metavar="KEY=VALUE",
        ),
    ] = None,
    top: Annotated[int | None, typer.Option(help="Only the N most expensive groups.", min=1)] = None,
    prices: Annotated[
        Path | None,
        typer.Option("--prices", help="YAML price file: override or add models, discounts (see analyzer/pricing.py)."),
    ] = None,
    inclusive: Annotated[
        bool,
        typer.Option(
            "--inclusive", help="With --by task: include every sub-agent's spans, not only the task's own trace."
        ),
    ] = False,
    fmt: Annotated[
        OutputFormat, typer.Option("--format", help="table for people; json or csv for machines.")
    ] = OutputFormat.table,
) -> None:
    """Cost in USD from genai-prices (historic, tiered and cache prices) and token usage counted exactly once.

    Calls whose model has no price are counted in unpriced_calls (their cost is left out, never zero);
    provider-reported costs are shown beside ours (reported_cost_usd), GPU time of self-hosted models in
    gpu_cost_usd.
    """
    query = CostQuery.from_text(by, since, until, where, top, inclusive)
    rows, table = cost_rows(open_dataset(data), query, prices)
    columns = [*by, *METRICS]
    title = "Cost by " + " x ".join(by) + (" (inclusive of sub-agents)" if inclusive and "task" in by else "")
    # piped (the demo, CI logs): wide enough for every column instead of Rich's 80
    width = None if sys.stdout.isatty() else TABLE_WIDTH
    render(rows, fmt, title=title, totals=METRICS, columns=columns, width=width)
    calls = sum(r["unpriced_calls"] for r in rows)
    if fmt is OutputFormat.table and calls:
        models = ", ".join(f"{p or '-'}/{m} ({reason})" for (p, m), reason in sorted(table.unpriced.items()))
        Console(width=width).print(
            f"[yellow]{calls:,} unpriced calls[/yellow] (no price for {models}): add them to a --prices file"
        )


def register(app: typer.Typer) -> None:
    app.command("cost")(cost)
