"""`analyze cost`: the figures per agent, task, model, provider, namespace, service, conversation, day, week,
month or label."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from analyzer.analysis import Analysis
from analyzer.cli_options import DataOption, FormatOption, GpuPricesOption, PricesOption, SinceOption, UntilOption
from analyzer.cost import KEYS_HELP, CostQuery, cost_rows
from analyzer.output import OutputFormat, TableLayout, render
from analyzer.pricing import PriceTable
from analyzer.task_queries import SHORT_ID

# left out first when a terminal is too narrow for every column (a blank column before any other)
OPTIONAL = (
    "cache_write_tokens",
    "reasoning_tokens",
    "reported_cost_usd",
    "cache_read_tokens",
    "gpu_busy_cost_usd",
    "token_cost_usd",
    "output_tokens",
    "input_tokens",
    "calls_without_usage",  # left out only after every other optional column (a note below says it too)
)
SHORT_NOTE = f"task: its id's first {SHORT_ID} hex digits (`analyze task` takes them); json/csv give whole ids"


def cost(
    by: Annotated[
        list[str] | None,
        typer.Option("--by", help=f"Group by KEY (repeat for several): {KEYS_HELP}. None: the totals.", metavar="KEY"),
    ] = None,
    data: DataOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
    where: Annotated[
        list[str] | None,
        typer.Option(
            "--where",
            help="Only rows with KEY=VALUE (repeatable), e.g. --where namespace=team-data, --where label:team=search.",
            metavar="KEY=VALUE",
        ),
    ] = None,
    top: Annotated[int | None, typer.Option(help="Only the N most expensive groups.", min=1)] = None,
    direct: Annotated[
        bool,
        typer.Option(
            "--direct/--inclusive",
            help="With --by task: only the task's own (top) trace, or (the default) every sub-agent's too.",
        ),
    ] = False,
    prices: PricesOption = None,
    gpu_prices: GpuPricesOption = None,
    fmt: FormatOption = OutputFormat.table,
) -> None:
    """What each group cost: tokens (genai-prices: historic, tiered and cache prices) plus GPU time, usage
    counted exactly once.

    total_cost_usd = token_cost_usd + gpu_busy_cost_usd. A call is charged once: by its tokens when its model
    has a price, else by its share of GPU busy time (self-hosted models), else it is counted in
    unpriced_calls (its cost is left out, never zero). calls_without_usage: calls whose instrumentation
    reported no token counts (tokens and cost unknown). reported_cost_usd: what providers reported.
    Definitions: analyzer/figures.py.
    """
    query = CostQuery.from_text(by or [], since, until, where, top, direct)
    analysis = Analysis.open(data, prices, gpu_prices)
    result = cost_rows(analysis, query)
    nothing = not result.rows or (
        not query.by and not result.rows[0]["llm_calls"] and not result.rows[0]["total_cost_usd"]
    )
    empty = analysis.why_empty("LLM calls", query.window, query.where) if nothing else None
    layout = TableLayout(optional=OPTIONAL, short=("task",), short_digits=SHORT_ID, short_note=SHORT_NOTE)
    totals = [c for c in query.columns if c not in query.by] if query.by else []
    render(result.rows, fmt, title=query.title(), totals=totals, columns=query.columns, layout=layout, empty=empty)
    if fmt is OutputFormat.table:
        say_unknown_costs(result.rows, result.prices)


def say_unknown_costs(rows: list[dict], prices: PriceTable) -> None:
    """Under a table: the calls whose cost the figures leave out, and why (unpriced models, calls that
    reported no usage); nothing when there are none."""
    console = Console(soft_wrap=True)
    calls = sum(r["unpriced_calls"] for r in rows)
    if calls:
        models = ", ".join(f"{p or '-'}/{m} ({reason})" for (p, m), reason in sorted(prices.unpriced.items()))
        console.print(f"[yellow]{calls:,} unpriced calls[/yellow] (no price for {models}): add them to a --prices file")
    without_usage = sum(r["calls_without_usage"] for r in rows)
    if without_usage:
        console.print(
            f"[yellow]{without_usage:,} calls without usage[/yellow]: their instrumentation reported no token counts, "
            "so their tokens and cost are unknown (not in the cost above, never counted as $0)"
        )


def register(app: typer.Typer) -> None:
    app.command("cost")(cost)
