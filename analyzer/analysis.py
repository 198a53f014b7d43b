"""The query layer's base: one dataset opened for questions, with what every figure needs installed once.

Every view (the `analyze` CLI, the HTTP API, the HTML report, the notebooks, a console) asks its questions
through an `Analysis` and the query functions that take one: `analyzer.cost.cost_rows`,
`analyzer.task_queries` (`list_tasks`, `task_tree`, `task_stats`), `analyzer.cost.totals`, and
`analyzer.gpu.gpu_report` for slice use. So one question gets one answer, whichever view asks it.

    analysis = Analysis.open(Path("demo-data"), prices_file=None, gpu_prices_file=None)
    result = cost_rows(analysis, CostQuery(by=["agent"]))

What gets installed on the connection, on first use:
- `charges` (`install_charges`): prices resolved once (`analyzer.pricing`), each call's GPU busy time where
  the dataset holds GPU allocations (`analyzer.gpu`), the rows the figures sum (`analyzer.figures`);
- task resolution (`install_tasks`): `trace_tasks`, `agent_runs` (`analyzer.tasks`); the per-span tree nodes
  a task's tree reads (`install_task_nodes`): `task_span_nodes`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import duckdb

from analyzer.dataset import Dataset, load_sql, open_dataset
from analyzer.gpu import install_gpu_costs
from analyzer.pricing import PriceTable, install_span_costs
from analyzer.tasks import install_task_views
from analyzer.timeparse import TimeRange

T = TypeVar("T")
KEPT = "kept"  # the in-memory database of the rows a long-lived process keeps (Analysis.keep)


class Analysis:
    def __init__(self, dataset: Dataset, prices_file: Path | None = None, gpu_prices_file: Path | None = None):
        self.dataset = dataset
        self.prices_file = prices_file
        self.gpu_prices_file = gpu_prices_file
        self._prices: PriceTable | None = None
        self._gpu = False
        self._tasks = False
        self._task_nodes = False
        self.scoped = False  # True: `spans` holds only some traces (analyzer/task_scope.py)
        self._memo: dict[Any, Any] = {}
        # long queries would draw DuckDB's progress bar into the output; in Jupyter without ipywidgets DuckDB
        # refuses the setting (and draws none)
        with contextlib.suppress(duckdb.InvalidInputException):
            dataset.con.execute("SET enable_progress_bar = false")

    @classmethod
    def open(
        cls, data: Path | str | None = None, prices_file: Path | None = None, gpu_prices_file: Path | None = None
    ) -> Analysis:
        return cls(open_dataset(data), prices_file, gpu_prices_file)

    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        return self.dataset.con

    @property
    def root(self) -> Path:
        return self.dataset.root

    def install_gpu(self, *, needed: bool = True) -> None:
        """span_gpu_costs: each inference span's share of GPU busy time (empty without GPU allocations, or
        when the caller knows that none of the spans asked about ran on a pod that held a slice)."""
        if not self._gpu:
            if needed and self.dataset.has_rows("gpu_allocations"):
                install_gpu_costs(self.con, self.gpu_prices_file)
            else:
                self.con.execute(load_sql("cost_no_gpu.sql"))
            self._gpu = True

    def install_charges(self) -> PriceTable:
        """span_costs (token prices), span_gpu_costs (GPU busy time per span) and the `charges` view."""
        if self._prices is None:
            prices = install_span_costs(self.con, self.prices_file)
            self.install_gpu()
            self.con.execute(load_sql("charges.sql"))
            self._prices = prices
        return self._prices

    @property
    def prices(self) -> PriceTable:
        return self.install_charges()

    def install_tasks(self) -> None:
        """Task resolution over the whole dataset (trace_tasks, agent_runs), and the charges."""
        if not self._tasks:
            install_task_views(self.con)
            self.install_charges()
            self._tasks = True

    def install_task_nodes(self) -> None:
        """Each span's tree node (the agent run it counts at) with its charges: what a task's tree reads."""
        self.install_tasks()
        if not self._task_nodes:
            self.con.execute(load_sql("tasks_span_nodes.sql"))
            self._task_nodes = True

    def has_relation(self, name: str) -> bool:
        """Whether a table or view of that name exists on the connection (installed already)."""
        found = self.con.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE table_name = $name "
            "UNION ALL SELECT count(*) FROM duckdb_views() WHERE view_name = $name",
            {"name": name},
        ).fetchall()
        return any(row[0] for row in found)

    def keep(self, view: str) -> None:
        """Compute a view's rows once into a table that the view then reads: for a process that asks many
        questions of one dataset state (`analyze serve`), so each is not a scan of the Parquet again. The
        view keeps its name and columns, so every query function reads it unchanged. The rows are held in
        an in-memory database that DuckDB compresses (dictionary, FSST, bit-packing): ~3.5x less memory
        than a plain temporary table, and scans as fast."""
        if self._kept(view):
            return
        self._attach_kept()
        self.con.execute(f"CREATE TABLE {KEPT}.{view} AS SELECT * FROM {view}")  # noqa: S608 (fixed names)
        self.con.execute(f"CHECKPOINT {KEPT}")  # compresses what was written
        self.con.execute(f"CREATE OR REPLACE TEMP VIEW {view} AS SELECT * FROM {KEPT}.{view}")  # noqa: S608

    def keep_table(self, table: str) -> None:
        """Move a temporary table into the compressed in-memory database (a view of the same name reads it)."""
        if self._kept(table):
            return
        self._attach_kept()
        self.con.execute(f"CREATE TABLE {KEPT}.{table} AS SELECT * FROM temp.main.{table}")  # noqa: S608
        self.con.execute(f"DROP TABLE temp.main.{table}")
        self.con.execute(f"CHECKPOINT {KEPT}")
        self.con.execute(f"CREATE TEMP VIEW {table} AS SELECT * FROM {KEPT}.{table}")  # noqa: S608

    def drop_tables(self, *tables: str) -> None:
        """Drop temporary tables that only building other tables needed (their memory is given back)."""
        for table in tables:
            self.con.execute(f"DROP TABLE IF EXISTS temp.main.{table}")

    def _attach_kept(self) -> None:
        self.con.execute(f"ATTACH IF NOT EXISTS ':memory:' AS {KEPT} (COMPRESS)")

    def _kept(self, name: str) -> bool:
        found = self.con.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE database_name = $db AND table_name = $name",
            {"db": KEPT, "name": name},
        ).fetchone()
        return bool(found and found[0])

    def memo(self, key: Any, compute: Callable[[], T]) -> T:
        """`compute()`, once per Analysis for the same key: an answer several views of one question share
        (the console's Agents page reads one idle analysis in two sections). Not thread-safe: a snapshot's
        lock serializes its questions."""
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    def span_coverage(self) -> tuple[datetime | None, datetime | None]:
        """The first and last span start of the dataset (None, None: no spans)."""
        first, last = self.con.execute("SELECT min(start_time), max(start_time) FROM spans").fetchone() or (None, None)
        return first, last

    def why_empty(self, what: str, window: TimeRange, filters: dict[str, str] | None = None) -> str:
        """One line saying why a query found no `what` (e.g. "LLM calls"): an empty dataset, a time range
        outside the data, or filters that match nothing."""
        first, last = self.span_coverage()
        if first is None or last is None:
            return f"no spans in the dataset at {self.root} yet (is a receiver writing to it?)"
        covers = f"the dataset's spans start {_day_time(first)} .. {_day_time(last)}"
        where = " and ".join(f"{key}={value}" for key, value in (filters or {}).items())
        said = " ".join(part for part in (f"no {what}", f"with {where}" if where else "", window.describe()) if part)
        return f"{said}; {covers}"


def _day_time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")
