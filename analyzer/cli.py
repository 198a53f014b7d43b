"""`analyze`: the analyzer's command line. Each command group lives in its own module and registers here."""

from __future__ import annotations

import sys

import click
import duckdb
import typer

from analyzer import cli_cost, cli_gpu, cli_idle, cli_report, cli_tasks
from analyzer.dataset import AnalyzerError

app = typer.Typer(
    name="analyze",
    help="Cost, tasks, GPU slices and idle curves of AI agents, from an agentmeter Parquet dataset.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

for module in (cli_tasks, cli_cost, cli_gpu, cli_idle, cli_report):
    module.register(app)


def main(argv: list[str] | None = None) -> int:
    """Entry point: user errors become one line on stderr and exit code 2, never a traceback."""
    try:
        app(args=argv, standalone_mode=False)
    except click.exceptions.Exit as done:
        return done.exit_code
    except click.ClickException as err:
        typer.echo(f"error: {err.format_message()}", err=True)
        return 2
    except click.exceptions.Abort:
        typer.echo("aborted", err=True)
        return 130
    except AnalyzerError as err:
        typer.echo(f"error: {err}", err=True)
        return 2
    except duckdb.Error as err:
        typer.echo(f"error: query failed: {str(err).splitlines()[0]}", err=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
