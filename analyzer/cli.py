"""`analyze`: the analyzer's command line. Each command group lives in its own module and registers here."""

from __future__ import annotations

import sys

import duckdb
import typer

from analyzer import cli_cost, cli_gpu, cli_idle, cli_prices, cli_report, cli_tasks
from analyzer.dataset import AnalyzerError
from collector_ext.cli.runner import run_cli

app = typer.Typer(
    name="analyze",
    help="Cost, tasks, GPU slices and idle curves of AI agents, from an agentmeter Parquet dataset.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

for module in (cli_tasks, cli_cost, cli_gpu, cli_idle, cli_prices, cli_report):
    module.register(app)


def main(argv: list[str] | None = None) -> int:
    """Entry point: user errors become one line on stderr and exit code 2, never a traceback."""
    return run_cli(app, argv, user_errors=(AnalyzerError,), query_errors=(duckdb.Error,))


if __name__ == "__main__":
    sys.exit(main())
