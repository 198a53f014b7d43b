"""`collector-ext compact`: merge each day's small files into large ones, drop days past the retention.

It belongs to the writer side, not to `analyze`: it writes and deletes dataset files (the analyzer only
reads, and can run with read-only credentials), it follows the writers' naming rules (storage/layout.py),
and it is deployed like them (a CronJob with the receivers' credentials and group), as Tempo's and Loki's
compactors are components of their write path. What it promises: storage/compaction.py.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, date, datetime, timedelta
from typing import Annotated

import structlog
import typer

from collector_ext.storage.compaction import DEFAULT_GRACE_SECONDS, DEFAULT_TARGET_BYTES, Compactor
from collector_ext.storage.stores import LocalStore, open_store
from collector_ext.storage.writer_lock import DatasetLock
from collector_ext.user_error import UserError

HELP = """Merge each day's small Parquet files into large ones (atomically: readers never see both or
neither), delete the merged inputs once --grace-minutes have passed, and drop whole days past
--retention-days. Local directories and s3://BUCKET/PREFIX alike; safe beside running receivers and
readers; idempotent after a crash. Run one at a time per dataset (e.g. an hourly CronJob)."""


class _Stderr:
    """Whatever sys.stderr is when a line is logged (not the one at configuration time)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def _through(value: str) -> date:
    today = datetime.now(UTC).date()
    if value == "yesterday":
        return today - timedelta(days=1)
    if value == "today":
        return today
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise UserError(f"--through {value!r} is not a date (YYYY-MM-DD), 'yesterday' or 'today'") from None


def compact(
    data_dir: Annotated[str, typer.Option(help="The dataset: a directory or s3://BUCKET/PREFIX.")],
    retention_days: Annotated[
        int | None,
        typer.Option(min=1, help="Keep today and the N-1 days before (UTC); older days are removed whole."),
    ] = None,
    through: Annotated[
        str, typer.Option(help="Last day to merge: YYYY-MM-DD, 'yesterday' (today's files still grow) or 'today'.")
    ] = "yesterday",
    grace_minutes: Annotated[
        float,
        typer.Option(min=0, help="Merged inputs are deleted once the merged file is this old (readers in flight)."),
    ] = DEFAULT_GRACE_SECONDS / 60,
    target_mib: Annotated[
        int, typer.Option(min=1, help="Largest merged file, MiB of input (merged in memory).")
    ] = DEFAULT_TARGET_BYTES >> 20,
    output: Annotated[str, typer.Option("--format", help="text or json.")] = "text",
) -> None:
    if output not in ("text", "json"):
        raise UserError(f"--format {output!r}: use text or json")
    last = _through(through)
    # the log goes to stderr: stdout is the summary (and --format json)
    # PrintLoggerFactory is typed for a TextIO; it only calls write and flush, which _Stderr has
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=_Stderr()))  # type: ignore[arg-type]
    store = open_store(data_dir)
    if isinstance(store, LocalStore) and not store.root.is_dir():
        raise UserError(f"no dataset at {data_dir}")
    try:
        with DatasetLock(data_dir, "compactor", "the compactor"):
            result = Compactor(store, grace_seconds=grace_minutes * 60, target_bytes=target_mib << 20).run(
                last, retention_days
            )
    except OSError as err:
        raise UserError(f"cannot compact {data_dir}: {' '.join(str(err).split())}") from None
    if output == "json":
        typer.echo(json.dumps(result.__dict__))
        return
    typer.echo(
        f"merged {result.files_merged} files into {result.files_written} in {result.partitions} day partitions; "
        f"deleted {result.files_deleted} merged inputs; dropped {len(result.days_dropped)} day partitions"
    )
    for relative in result.files_unreadable:
        typer.echo(f"warning: unreadable file left as it is: {relative}", err=True)


def register(app: typer.Typer) -> None:
    app.command("compact", help=HELP)(compact)
