"""Running a Typer app as a command: user errors are one line on stderr and a non-zero exit, never a traceback.

Shared by `collector-ext` and `analyze`. typer 0.2x bundles its own click; every usage error it raises (a
bad option value, an unknown option, a missing argument) is a `typer.TyperException`, its public base, with
`format_message()`. Exceptions that are neither usage errors nor the caller's `user_errors` are bugs: they
surface as they are.
"""

from __future__ import annotations

import typer

USAGE_ERROR = 2


def run_cli(
    app: typer.Typer,
    argv: list[str] | None,
    user_errors: tuple[type[Exception], ...] = (),
    query_errors: tuple[type[Exception], ...] = (),
) -> int:
    """Run `app`; `user_errors` exit 2 with their message, `query_errors` exit 1 with their first line."""
    try:
        code = app(args=argv, standalone_mode=False)
    except typer.Exit as done:
        return done.exit_code
    except typer.TyperException as err:
        typer.echo(f"error: {err.format_message()}", err=True)
        return USAGE_ERROR
    except typer.Abort:
        typer.echo("aborted", err=True)
        return 130
    except user_errors as err:
        typer.echo(f"error: {err}", err=True)
        return USAGE_ERROR
    except query_errors as err:
        typer.echo(f"error: query failed: {str(err).splitlines()[0]}", err=True)
        return 1
    return code if isinstance(code, int) else 0  # typer.Exit(n) comes back as a return value
