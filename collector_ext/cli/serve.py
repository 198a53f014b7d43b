"""`collector-ext serve`: run the receiver.

Every `ReceiverConfig` field is a flag (`data_dir` -> `--data-dir`) whose help is the field's description,
so the config module stays the one place options are documented. A flag not given is None, which lets the
`AGENTMETER_*` environment and the YAML file (`--config`) apply.
"""

from __future__ import annotations

import inspect
import types
import typing
from pathlib import Path
from typing import Any

import pydantic
import typer

from collector_ext.config import ReceiverConfig, load_config

HELP = """Receive OTLP traces (gRPC and HTTP) and GPU metrics; write GenAI spans to a Parquet dataset.

Runs until SIGTERM/SIGINT, then writes out every span it holds and exits 0. Every option can also be set
in the YAML file given by --config (field names with underscores) or by AGENTMETER_<FIELD> environment
variables; flags win over the environment, which wins over the file."""


def _unwrap_optional(annotation: Any) -> Any:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _option(name: str, field: pydantic.fields.FieldInfo) -> inspect.Parameter:
    annotation = _unwrap_optional(field.annotation)
    flag = "--" + name.replace("_", "-")
    if annotation is bool:  # an on/off switch: --metrics-auth / --no-metrics-auth
        flag = f"{flag}/--no-{flag[2:]}"
    shown: Any = "hostname" if name == "writer_id" else field.get_default(call_default_factory=True)
    if isinstance(shown, list):
        shown = ", ".join(shown)
        flag_help: str | None = f"{field.description} Repeat the flag for several values."
    else:
        flag_help = field.description
    option = typer.Option(
        None,
        flag,
        help=flag_help,
        show_default=str(shown) if shown is not None else False,
    )
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=annotation | None)


def _one_line(err: pydantic.ValidationError) -> str:
    problems = []
    for item in err.errors():
        where = "--" + "-".join(str(p) for p in item["loc"]).replace("_", "-") if item["loc"] else "config"
        if item["loc"]:
            problems.append(f"{where}: {item['msg']}")
        else:  # a rule between options (config.py `_consistent`): its message names them
            problems.append(item["msg"].removeprefix("Value error, "))
    return "; ".join(problems)


def serve(config_file: Path | None = None, **flags: Any) -> None:
    from collector_ext.server import run_server

    flags = {
        k: (list(v) if isinstance(v, tuple | list) and v else (None if isinstance(v, tuple | list) else v))
        for k, v in flags.items()
    }
    try:
        config = load_config(config_file, **flags)
    except pydantic.ValidationError as err:
        raise typer.BadParameter(_one_line(err)) from None
    try:
        code = run_server(config)
    except OSError as err:  # a port in use, a data or WAL directory that cannot be created or written
        if err.strerror:  # from the OS: say what failed and where
            where = f": {err.filename}" if err.filename else ""
            typer.echo(f"error: cannot start the receiver: {err.strerror}{where}", err=True)
        else:  # ours, already a sentence
            typer.echo(f"error: {err}", err=True)
        raise typer.Exit(1) from None
    raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    params = [
        inspect.Parameter(
            "config_file",
            inspect.Parameter.KEYWORD_ONLY,
            default=typer.Option(
                None, "--config", help="YAML config file (keys are the option names with underscores)."
            ),
            annotation=Path | None,
        )
    ]
    params += [_option(name, field) for name, field in ReceiverConfig.model_fields.items()]

    def command(**kwargs: Any) -> None:
        serve(**kwargs)

    # typer reads the options from the signature; a function takes the attribute (typeshed does not say so)
    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__doc__ = HELP
    app.command("serve", help=HELP)(command)
