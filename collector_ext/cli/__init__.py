"""`collector-ext`: the receiver sidecar's command line (serve, loadgen, ...). Commands register here."""

from __future__ import annotations

import typer

from collector_ext.cli import compact as cli_compact
from collector_ext.cli import loadgen as cli_loadgen
from collector_ext.cli import serve as cli_serve
from collector_ext.cli.runner import run_cli
from collector_ext.user_error import UserError

app = typer.Typer(
    name="collector-ext",
    help="agentmeter's OTLP receiver sidecar: GenAI spans in over OTLP, durable Parquet out.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

for module in (cli_serve, cli_loadgen, cli_compact):
    module.register(app)


def main(argv: list[str] | None = None) -> int:
    return run_cli(app, argv, user_errors=(UserError,))
