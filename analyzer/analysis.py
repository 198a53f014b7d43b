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
- task resolution and the per-span tree nodes (`install_tasks`): `trace_tasks`, `agent_runs` (`analyzer.tasks`)
  and `task_span_nodes`.
"""

from __future__ import annotations

import contextlib
from datetime import datetime
from pathlib import Path

import duckdb

from analyzer.dataset import Dataset, load_sql, open_dataset
from analyzer.gpu import install_gpu_costs
from analyzer.pricing import PriceTable, install_span_costs
from analyzer.tasks import install_task_views
from analyzer.timeparse import TimeRange


class Analysis:
    def __init__(self, dataset: Dataset, prices_file: Path | None = None, gpu_prices_file: Path | None = None):
        self.dataset = dataset
        self.prices_file = prices_file
        self.gpu_prices_file = gpu_prices_file
        self._prices: PriceTable | None = None
        self._gpu = False
        self._tasks = False
        self.scoped = False  # True: `spans` holds only some traces (analyzer/task_scope.py)
        # long queries would draw DuckDB's progress bar into the output; in Jupyter without ipywidgets DuckDB
        # refuses the setting (and draws none)
        with contextlib.suppress(duckdb.InvalidInputException):
            dataset.con.execute("SET enable_progress_bar = false")

    @classmethod
    def open(
        cls, data: Path | None = None, prices_file: Path | None = None, gpu_prices_file: Path | None = None
    ) -> Analysis:
        return cls(open_dataset(data), prices_file, gpu_prices_file)

    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        return self.dataset.con

    @property
    def root(self) -> Path:
        return self.dataset.root

    def install_gpu(self) -> None:
        """span_gpu_costs: each inference span's share of GPU busy time (empty without GPU allocations)."""
        if not self._gpu:
            if self.dataset.has_rows("gpu_allocations"):
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
        """Task resolution over the whole dataset and each span's tree node, with its charges."""
        if not self._tasks:
            install_task_views(self.con)
            self.install_charges()
            self.con.execute(load_sql("tasks_span_nodes.sql"))
            self._tasks = True

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
        view keeps its name and columns, so every query function reads it unchanged."""
        kept = f"{view}_kept"
        if self.has_relation(kept):
            return
        self.con.execute(f"CREATE TEMP TABLE {kept} AS SELECT * FROM {view}")  # noqa: S608 (fixed names)
        self.con.execute(f"CREATE OR REPLACE TEMP VIEW {view} AS SELECT * FROM {kept}")  # noqa: S608

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
