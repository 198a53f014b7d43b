"""`analyze`: the analyzer's command line. Each command group lives in its own module and registers here.

A command's module is imported only when that command runs (`COMMAND_MODULES`): each brings its own heavy
imports (DuckDB, pyarrow, plotly, pydantic, ...), and `analyze task` should not pay for the report's. With no
command (`--help`) or an unknown one, every module registers, so the help lists them all.
"""

from __future__ import annotations

import importlib
import logging
import sys

import typer

from collector_ext.cli.runner import run_cli

# command -> the module (analyzer.<name>) that defines it; MODULES is the order `--help` lists them in
COMMAND_MODULES: dict[str, str] = {
    "tasks": "cli_tasks",
    "task": "cli_tasks",
    "cost": "cli_cost",
    "gpu": "cli_gpu",
    "idle": "cli_idle",
    "recommend": "cli_idle",
    "prices": "cli_prices",
    "report": "cli_report",
    "serve": "cli_report",
    "runaway": "cli_runaway",
    "budget": "cli_budget",
}
MODULES = tuple(dict.fromkeys(COMMAND_MODULES.values()))


def build_app(command: str | None = None) -> typer.Typer:
    """The `analyze` app with the module of `command` registered (every module: None or an unknown one)."""
    app = typer.Typer(
        name="analyze",
        help="Cost, tasks, GPU slices and idle curves of AI agents, from an agentmeter Parquet dataset.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        add_completion=False,
    )
    # a group even with one command registered: `analyze task ID` keeps its command name
    app.callback()(_commands)
    wanted = COMMAND_MODULES.get(command or "")
    for name in (wanted,) if wanted else MODULES:
        importlib.import_module(f"analyzer.{name}").register(app)
    return app


def _commands() -> None:
    """Cost, tasks, GPU slices and idle curves of AI agents, from an agentmeter Parquet dataset."""


class _StderrLine(logging.Handler):
    """A warning of the analyzer (e.g. files of the dataset left out) as one line on the current stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        typer.echo(record.getMessage(), err=True)


def main(argv: list[str] | None = None) -> int:
    """Entry point: user errors become one line on stderr and exit code 2, never a traceback."""
    args = sys.argv[1:] if argv is None else argv
    app = build_app(args[0] if args and not args[0].startswith("-") else None)
    import duckdb

    from analyzer import dataset

    if not any(isinstance(h, _StderrLine) for h in dataset.log.handlers):
        dataset.log.addHandler(_StderrLine(logging.WARNING))
        dataset.log.propagate = False
    return run_cli(app, argv, user_errors=(dataset.AnalyzerError,), query_errors=(duckdb.Error,))


if __name__ == "__main__":
    sys.exit(main())
