"""`analyze report` (self-contained HTML) and `analyze serve` (the HTTP API with the report)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from analyzer.dataset import open_dataset

DataOption = Annotated[
    Path | None, typer.Option("--data", help="Dataset directory (default $AGENTMETER_DATA or ./agentmeter-data).")
]
PricesOption = Annotated[
    Path | None, typer.Option("--prices", help="YAML price file: override or add models, discounts.")
]


def report(
    data: DataOption = None,
    out: Annotated[Path, typer.Option("--out", help="Where to write the HTML page.")] = Path("agentmeter-report.html"),
    prices: PricesOption = None,
) -> None:
    """Write an HTML report (plotly inline, works offline): cost by agent over time, by model, top tasks,
    unpriced share, and the other analyzers' sections."""
    from analyzer.report import write_report

    written = write_report(open_dataset(data), out, prices)
    typer.echo(f"report written to {written.resolve()}")


def serve(
    data: DataOption = None,
    port: Annotated[int, typer.Option(help="TCP port.", min=1, max=65535)] = 8080,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    prices: PricesOption = None,
) -> None:
    """Serve /api/cost, /api/tasks and /report over HTTP until interrupted."""
    import uvicorn

    from analyzer.api import create_app

    open_dataset(data)  # a missing dataset is an error now, not on the first request
    uvicorn.run(create_app(data, prices), host=host, port=port, log_level="warning")


def register(app: typer.Typer) -> None:
    app.command("report")(report)
    app.command("serve")(serve)
