"""The `analyze` commands' shared options, each defined once (name, type, help): every command that takes
a dataset, a price file, a time range or an output format takes it the same way."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from analyzer.output import OutputFormat
from analyzer.timeparse import TIME_HELP

DataOption = Annotated[
    Path | None,
    typer.Option(
        "--data",
        help="Dataset directory or s3://BUCKET/PREFIX (read through a local cache, $AGENTMETER_CACHE_DIR; "
        "AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION apply) (default: "
        "$AGENTMETER_DATA, else ./agentmeter-data).",
    ),
]
PricesOption = Annotated[
    Path | None,
    typer.Option(
        "--prices", help="YAML price file: override or add models, discounts (see collector_ext/pricing/price_file.py)."
    ),
]
GpuPricesOption = Annotated[
    Path | None,
    typer.Option(
        "--gpu-prices",
        help="YAML of USD per slice-hour by MIG profile (defaults: analyzer/gpu_prices.example.yaml).",
    ),
]
SinceOption = Annotated[str | None, typer.Option("--since", help=f"From (inclusive): {TIME_HELP}.")]
UntilOption = Annotated[str | None, typer.Option("--until", help=f"Until (exclusive): {TIME_HELP}.")]
FormatOption = Annotated[
    OutputFormat, typer.Option("--format", help="table for people; json or csv for machines (every column).")
]
