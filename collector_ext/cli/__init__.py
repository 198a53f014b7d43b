"""`collector-ext`: the receiver sidecar's command line (serve, loadgen, ...). Commands register here.

The command modules are imported when the app is built (`main`), not when this package is: `analyze` shares
`collector_ext.cli.runner` and should not pay for the receiver's imports.
"""

from __future__ import annotations

import typer

from collector_ext.cli.runner import run_cli


def build_app() -> typer.Typer:
    from collector_ext.cli import compact as cli_compact
    from collector_ext.cli import loadgen as cli_loadgen
    from collector_ext.cli import serve as cli_serve

    app = typer.Typer(
        name="collector-ext",
        help="agentmeter's OTLP receiver sidecar: GenAI spans in over OTLP, durable Parquet out.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        add_completion=False,
    )
    for module in (cli_serve, cli_loadgen, cli_compact):
        module.register(app)
    return app


def main(argv: list[str] | None = None) -> int:
    from collector_ext.user_error import UserError

    return run_cli(build_app(), argv, user_errors=(UserError,))
