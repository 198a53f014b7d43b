"""A dataset kept open by a long-lived process (`analyze serve`: the HTTP API and the console).

A `Snapshot` is one state of the dataset, opened once, with the answers already given. `DatasetCache` hands
out the current one and opens a new one only when the dataset's files (or the price files) changed: keyed on
the file listing, sizes and modification times.

A snapshot keeps in memory what every question reads (`prepare`): the `charges` rows (every figure is a sum of
them, analyzer/figures.py) and the resolved tasks with their listing rows. Each query then reads those tables
instead of the Parquet again: at 100 k tasks a cost query takes ~0.1 s instead of ~2 s, a task page ~0.1 s
instead of ~1 s; preparing takes ~20 s there, once per dataset state. The query functions are the very ones
the CLI calls (`Analysis.keep` swaps a view for a table of its rows under the same name), so the answers are
the CLI's.

The first state of a starting server is handed out once its charges are kept (all the Overview, the first
page, reads: `Page.charges_only`); the rest (`LATER_STEPS`: the tasks, their tree nodes, the idle and GPU
tables, every agent's GPU cost) is then done in the background, one step at a time, after that first page. Any question that reads
more than the charges finishes the preparation first (under the snapshot's lock), so it never builds a table
a second time: at 100 k tasks the first page comes ~3x sooner, and a page asked before the preparation is
done waits for it.

While a newer state is being prepared, `DatasetCache.latest` keeps answering from the current one and says
so (the console shows "refreshing"), so a receiver writing a file every few seconds does not make every
page wait for a rebuild; `DatasetCache.snapshot` (the JSON API) waits for the newest state.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from analyzer.analysis import Analysis
from analyzer.dataset import AnalyzerError, open_dataset, resolve_data_dir
from analyzer.remote import remote_location
from analyzer.sandbox_cost import kept_agent_gpu_costs
from analyzer.task_queries import install_task_rows
from analyzer.tasks import BUILDING_TABLES

MAX_MEMO = 256  # answers kept per dataset state
T = TypeVar("T")


def dataset_fingerprint(root: Path, *files: Path | None) -> tuple:
    """What the answers depend on: every file of the dataset (path, size, mtime) and the price files."""
    entries = []
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.name.startswith(".") and "_wal" not in path.parts:
            stat = path.stat()
            entries.append((str(path.relative_to(root)), stat.st_size, stat.st_mtime_ns))
    for extra in files:
        if extra is not None:
            found = extra.stat() if extra.exists() else None
            entries.append((str(extra), found.st_size if found else -1, found.st_mtime_ns if found else -1))
    return tuple(entries)


def prepare(analysis: Analysis) -> None:
    """Keep what every question reads in memory (compressed: `Analysis.keep`): the charges rows, the resolved
    tasks with their listing rows and per-span tree nodes, the agent runs of the idle curves and the GPU
    tables (in that order: the tasks' tables are built from the kept charges); the per-span tables only
    building them needed are dropped."""
    keep_charges(analysis)
    for step in LATER_STEPS:
        step(analysis)


def keep_charges(analysis: Analysis) -> None:
    """The first step: the charges rows, all the Overview reads (so it answers before the tasks are resolved)."""
    analysis.install_charges()
    analysis.keep("charges")


def _keep_task_rows(analysis: Analysis) -> None:
    install_task_rows(analysis)
    analysis.keep("task_rows")


def _keep_task_nodes(analysis: Analysis) -> None:
    analysis.install_task_nodes()
    analysis.keep_table("task_span_nodes")
    analysis.drop_tables(*BUILDING_TABLES)


def _keep_idle_and_gpu(analysis: Analysis) -> None:
    for view in ("idle_spans", "agent_pods", "gpu_allocations", "gpu_metrics"):
        analysis.keep(view)


def _agent_gpu_costs(analysis: Analysis) -> None:
    """Every agent's GPU cost an hour (the Agents page's recommendation reads it, whatever the window): ~0.2 s
    at 100 k tasks, once per state rather than on the first Agents page. If it fails (a GPU price file that
    does not read), the Agents page computes it and says why."""
    with contextlib.suppress(AnalyzerError):
        kept_agent_gpu_costs(analysis)


# What `prepare` keeps after the charges, in order; a snapshot does these after it is handed out.
LATER_STEPS: tuple[Callable[[Analysis], None], ...] = (
    _keep_task_rows,
    _keep_task_nodes,
    _keep_idle_and_gpu,
    _agent_gpu_costs,
)
FIRST_QUESTION_GRACE_SECONDS = 2.0  # how long the rest of the preparation lets the first page go first


@dataclass
class Snapshot:
    """One state of the dataset, opened once: its Analysis and the answers already computed for it."""

    fingerprint: tuple
    analysis: Analysis
    opened_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    prepare_seconds: float = 0.0
    # one DuckDB connection: one query at a time; re-entrant, so a page holds it for all its questions
    lock: threading.RLock = field(default_factory=threading.RLock)
    memo: dict[Any, Any] = field(default_factory=dict)
    pending: list[Callable[[Analysis], None]] = field(default_factory=list)  # preparation steps still to do
    asked: threading.Event = field(default_factory=threading.Event)  # a question was answered

    def answer(self, key: Any, compute: Callable[[Analysis], T], *, charges_only: bool = False) -> T:
        """`compute`'s answer, computed once per dataset state for the same `key`. A question that reads only
        the charges (`charges_only`) need not wait for the rest of the preparation; any other finishes it
        first, so it reads the kept tables rather than building them once more."""
        with self.lock:
            if not charges_only:
                self.finish()
            if len(self.memo) >= MAX_MEMO:  # many different questions: start over rather than grow
                self.memo.clear()
            if key not in self.memo:
                self.memo[key] = compute(self.analysis)
            self.asked.set()
            return self.memo[key]

    def run(self, compute: Callable[[Analysis], T]) -> T:
        with self.lock:
            self.finish()
            return compute(self.analysis)

    def finish(self) -> None:
        """Do the preparation steps still to do (the lock held)."""
        with self.lock:
            while self._next_step():
                pass

    def finish_in_background(self, grace: float) -> None:
        """Do the preparation steps still to do one at a time, questions going in between; the first waits up
        to `grace` seconds for the first question (the console's first page) to be answered."""
        self.asked.wait(grace)
        while True:
            with self.lock:
                if not self._next_step():
                    return

    def _next_step(self) -> bool:
        """Do the next preparation step (the lock held); False when none was left. A step that raises stays
        to do."""
        if not self.pending:
            return False
        self.pending[0](self.analysis)
        self.pending.pop(0)
        return True


REMOTE_REFRESH_SECONDS = 30.0


class DatasetCache:
    """The current Snapshot of a dataset: reopened only when its files (or the price files) changed."""

    def __init__(self, data: Path | None, prices_file: Path | None, gpu_prices_file: Path | None, *, keep: bool = True):
        # s3://: the local copy is brought up to date at most every REMOTE_REFRESH_SECONDS (analyzer/remote.py)
        self.remote = remote_location(data if data is not None else os.environ.get("AGENTMETER_DATA"))
        self.root = resolve_data_dir(data)
        self._synced_at = time.monotonic()
        self.prices_file = prices_file
        self.gpu_prices_file = gpu_prices_file
        self.keep = keep  # False: plain views (nothing held in memory; every answer reads the Parquet)
        self._current: Snapshot | None = None
        self._building: tuple[tuple, Future[Snapshot]] | None = None
        self._lock = threading.Lock()
        self.opened = 0  # how many times the dataset was (re)opened: tests read it

    def snapshot(self) -> Snapshot:
        """The snapshot of the dataset as it is now (waits while it is being prepared)."""
        fingerprint = self._fingerprint()
        for _ in range(2):  # a preparation of an older state under way: wait for it, then prepare this one
            with self._lock:
                current = self._current
                if current is not None and current.fingerprint == fingerprint:
                    return current
                building = self._build(fingerprint)
            ready = building.result()
            if ready.fingerprint == fingerprint:
                return ready
        return ready

    def latest(self) -> tuple[Snapshot, bool]:
        """The newest prepared snapshot, and whether a newer state of the dataset is being prepared (it is
        then answered from the current one, and the next call may get the new one)."""
        fingerprint = self._fingerprint()
        with self._lock:
            current = self._current
            if current is not None and current.fingerprint == fingerprint:
                return current, False
            building = self._build(fingerprint)
        if current is None:
            return building.result(), False
        if building.done() and building.exception() is None:
            return building.result(), False
        return current, True

    def warm(self) -> None:
        """Prepare the current state in the background (`analyze serve` calls it at start-up)."""
        with self._lock:
            self._build(self._fingerprint())

    def _fingerprint(self) -> tuple:
        if self.remote is not None and time.monotonic() - self._synced_at >= REMOTE_REFRESH_SECONDS:
            with self._lock:
                self.root = resolve_data_dir(self.remote)
                self._synced_at = time.monotonic()
        if not self.root.is_dir():
            open_dataset(self.root)  # the one-line "no dataset at ..." error
        return dataset_fingerprint(self.root, self.prices_file, self.gpu_prices_file)

    def _build(self, fingerprint: tuple) -> Future[Snapshot]:
        """The future snapshot of `fingerprint`: the one being prepared, or a new preparation (lock held)."""
        if self._building is not None:
            building_for, building = self._building
            if building_for == fingerprint and not (building.done() and building.exception() is not None):
                return building
            if not building.done():
                return building  # one preparation at a time: the next call asks again
        future: Future[Snapshot] = Future()
        self._building = (fingerprint, future)
        threading.Thread(target=self._prepare, args=(fingerprint, future), daemon=True, name="snapshot").start()
        return future

    def _prepare(self, fingerprint: tuple, future: Future[Snapshot]) -> None:
        try:
            started = time.monotonic()
            analysis = Analysis(open_dataset(self.root), self.prices_file, self.gpu_prices_file)
            if self.keep:
                keep_charges(analysis)
            snapshot = Snapshot(fingerprint, analysis, pending=list(LATER_STEPS) if self.keep else [])
            first = self._current is None
            if not first:  # a newer state: the current one answers until this one is wholly prepared
                snapshot.finish()
            snapshot.prepare_seconds = time.monotonic() - started
        except BaseException as err:  # handed to whoever waits: AnalyzerError is their 400
            future.set_exception(err)
            return
        with self._lock:
            self._current = snapshot
            self.opened += 1
        future.set_result(snapshot)
        if first:  # the first state: its first page (the Overview reads only the charges) goes before the rest
            # a step that fails is done again by the next question that needs it, which reports the error
            with contextlib.suppress(Exception):
                snapshot.finish_in_background(FIRST_QUESTION_GRACE_SECONDS)
