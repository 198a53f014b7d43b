"""`collector-ext`: the receiver sidecar's command line (serve, loadgen, ...). Commands register here."""

from __future__ import annotations

import sys

import click
import typer

from collector_ext import cli_loadgen, cli_serve

app = typer.Typer(
    name="collector-ext",
    help="agentmeter's OTLP receiver sidecar: GenAI spans in over OTLP, durable Parquet out.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

for module in (cli_serve, cli_loadgen):
    module.register(app)


def main(argv: list[str] | None = None) -> int:
    try:
        app(args=argv, standalone_mode=False)
    except click.exceptions.Exit as done:
        return done.exit_code
    except click.ClickException as err:
        typer.echo(f"error: {err.format_message()}", err=True)
        return 2
    except click.exceptions.Abort:
        return 130
    except ValueError as err:
        typer.echo(f"error: {err}", err=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
