"""`collector-ext loadgen`: send a realistic multi-agent workload to an OTLP endpoint (see demo/loadgen.py).

The workload generator drives the real OpenTelemetry SDK; it is imported when the command runs, so that
`collector-ext serve` (the receiver) never loads the SDK or anything else of the demo.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from collector_ext.config import parse_endpoint
from collector_ext.user_error import UserError

if TYPE_CHECKING:
    from collector_ext.demo.loadgen import Protocol, WorkloadResult

PROTOCOLS: dict[str, Protocol] = {"grpc": "grpc", "http/protobuf": "http/protobuf"}


def _parse_start(value: str | None) -> datetime | None:
    if value is None:
        return None
    if value == "now":
        return datetime.now(UTC).replace(microsecond=0)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise UserError(f"--start {value!r} is not an ISO date/time or 'now'") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def loadgen(
    endpoint: Annotated[
        str,
        typer.Option(
            help="OTLP endpoint: HOST:PORT for gRPC; http://HOST:PORT for HTTP (path /v1/traces unless given)."
        ),
    ] = "127.0.0.1:4317",
    tasks: Annotated[int, typer.Option(min=0, help="Tasks (orchestrator runs with their sub-agents) to send.")] = 40,
    seed: Annotated[int, typer.Option(help="Same seed, same spans, same ids, same expected totals.")] = 1,
    protocol: Annotated[str, typer.Option(help="grpc or http/protobuf.")] = "grpc",
    gzip: Annotated[bool, typer.Option("--gzip", help="Compress requests with gzip.")] = False,
    start: Annotated[
        str | None,
        typer.Option(help="Simulated time of the first task (ISO, or 'now'); default: the workload ends about now."),
    ] = None,
    time_scale: Annotated[
        float,
        typer.Option(min=0, help="Simulated seconds per wall second between tasks; 0 sends without waiting."),
    ] = 0.0,
    duration_scale: Annotated[
        float, typer.Option(min=0.000001, help="Multiplies every simulated duration and idle gap.")
    ] = 1.0,
    max_seconds: Annotated[float, typer.Option(min=0.001, help="Wall-clock guard: no new task after this.")] = 60.0,
    expected_out: Annotated[
        Path | None, typer.Option(help="Write the expected totals and task trees as JSON to this file.")
    ] = None,
    timeout: Annotated[float, typer.Option(min=0.001, help="Exporter timeout per request, seconds.")] = 10.0,
    quiet: Annotated[bool, typer.Option("--quiet", help="Print only the one-line summary.")] = False,
) -> None:
    """Send a multi-agent GenAI workload (orchestrators, linked sub-agents, several providers, dialects,
    bursts and idle gaps on a simulated clock) through the real OpenTelemetry SDK exporter.

    Example: collector-ext loadgen --endpoint 127.0.0.1:4317 --tasks 40 --seed 7 --gzip
    """
    chosen = PROTOCOLS.get(protocol)
    if chosen is None:
        raise UserError(f"--protocol must be grpc or http/protobuf, not {protocol!r}")
    try:
        parse_endpoint(endpoint.split("://", 1)[-1].split("/", 1)[0])
    except ValueError as err:
        raise UserError(str(err)) from None
    from collector_ext.demo.loadgen import WorkloadSpec, make_exporter, run_workload

    spec = WorkloadSpec(
        tasks=tasks,
        seed=seed,
        start=_parse_start(start),
        time_scale=time_scale,
        duration_scale=duration_scale,
        max_seconds=max_seconds,
    )
    make_exporter(endpoint, chosen, gzip, timeout).shutdown()  # validates the endpoint before any span is made
    result = run_workload(spec, lambda: make_exporter(endpoint, chosen, gzip, timeout))
    if expected_out is not None:
        expected_out.write_text(json.dumps(result.to_json(), indent=2) + "\n")
    _print_summary(result, quiet)
    if result.failed_spans:
        typer.echo(f"error: the exporter could not deliver {result.failed_spans} spans to {endpoint}", err=True)
        raise typer.Exit(1)


def _print_summary(result: WorkloadResult, quiet: bool) -> None:
    typer.echo(
        f"sent {result.tasks_sent} tasks, {result.traces_sent} traces, {result.spans_sent} spans "
        f"({result.exported_spans} delivered, {result.failed_spans} failed), "
        f"simulated {result.to_json()['first_start']} .. {result.to_json()['last_end']}"
        + (" (stopped early by --max-seconds)" if result.stopped_early else "")
    )
    if quiet:
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="expected per agent")
    columns = ("runs", "llm_calls", "input_tokens", "output_tokens", "cache_read_tokens", "reasoning_tokens")
    table.add_column("agent")
    for column in columns:
        table.add_column(column, justify="right")
    for name, usage in sorted(result.agents.items()):
        table.add_row(name, *(f"{getattr(usage, c):,}" for c in columns))
    Console().print(table)


def register(app: typer.Typer) -> None:
    app.command("loadgen")(loadgen)
