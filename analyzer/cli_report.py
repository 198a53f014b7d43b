"""`analyze report` (self-contained HTML) and `analyze serve` (the HTTP API with the report and its docs)."""

from __future__ import annotations

import socket
import sys
from pathlib import Path
from typing import Annotated

import typer

from analyzer.analysis import Analysis
from analyzer.cli_options import DataOption, GpuPricesOption, PricesOption
from analyzer.dataset import open_dataset


def report(
    data: DataOption = None,
    out: Annotated[Path, typer.Option("--out", help="Where to write the HTML page.")] = Path("agentmeter-report.html"),
    prices: PricesOption = None,
    gpu_prices: GpuPricesOption = None,
    budgets: Annotated[
        Path | None, typer.Option("--budgets", help="Budgets YAML: adds the budget section (analyze budget).")
    ] = None,
) -> None:
    """Write an HTML report (plotly inline, works offline): the headline figures, budgets (with --budgets), cost
    by agent over time, by model, top tasks, unpriced share, runaway tasks, GPU slices and idle curves."""
    from analyzer.budgets import load_budgets
    from analyzer.report import write_report  # plotly: only this command pays for importing it

    found = load_budgets(budgets) if budgets else None
    written = write_report(Analysis.open(data, prices, gpu_prices), out, found)
    typer.echo(f"report written to {written.resolve()}")


def serve(
    data: DataOption = None,
    port: Annotated[int, typer.Option(help="TCP port (0: any free port).", min=0, max=65535)] = 8080,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    prices: PricesOption = None,
    gpu_prices: GpuPricesOption = None,
    budgets: Annotated[
        Path | None,
        typer.Option("--budgets", help="Budgets YAML (format: analyzer/budgets.py): the console's Budgets page."),
    ] = None,
) -> None:
    """Serve the web console (/), the JSON API (/api/...), its docs (/docs, offline) and the report (/report)
    until interrupted.

    Prints the URL once listening. The dataset is read once per state of its files (what every page reads is
    kept in memory, prepared in the background from start-up) and read again when they change."""
    import uvicorn

    from analyzer.api import create_app

    if budgets is not None:
        from analyzer.budgets import load_budgets

        budgets = budgets.resolve()  # the CLI commands the page shows work from any directory
        load_budgets(budgets)  # a bad budgets file is an error now, not on the Budgets page
    dataset = open_dataset(data)  # a missing dataset is an error now, not on the first request
    root = dataset.root

    class Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            if self.started:
                bound_host, bound_port = self.servers[0].sockets[0].getsockname()[:2]
                url = f"http://{bound_host}:{bound_port}"
                print(
                    f"agentmeter console on {url}/ for {root} (API: {url}/api/cost?by=agent, docs {url}/docs, "
                    f"report {url}/report); Ctrl-C stops it",
                    flush=True,
                )

    app = create_app(data, prices, gpu_prices, budgets_file=budgets)
    app.state.cache.warm()  # the first page need not wait for the dataset to be read
    config = uvicorn.Config(app, host=host, port=port, log_level="warning")
    Server(config).run()
    sys.stdout.flush()


def register(app: typer.Typer) -> None:
    app.command("report")(report)
    app.command("serve")(serve)
