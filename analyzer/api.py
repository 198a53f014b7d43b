"""HTTP API (FastAPI) over a dataset: `analyze serve --data DIR --port N`.

    GET /api/cost?by=agent[&by=week][&since=7d][&until=...][&where=label:team=search][&top=N][&direct=true]
    GET /api/totals[?since=...&until=...]          the headline figures (the report's)
    GET /api/tasks[?since&until&agent&status=failed&sort=start|cost&top=N&offset=K]
    GET /api/tasks/{id or unique prefix}           one task as a tree of agent runs
    GET /api/task-stats?by=agent|day|week|month    tasks, failures, cost-per-task distribution
    GET /report                                     the HTML report (self-contained)
    GET /docs                                       the OpenAPI docs (Swagger UI served from here: offline)

Every answer is the CLI's JSON for the same question (the same query functions, `analyzer.analysis`).
The dataset is opened once and kept, with the answers already given (the report, task listings), until its
files change (`DatasetCache`: keyed on the file listing, sizes and modification times, and the price
files'), so a request does not re-resolve 100 k tasks nor rebuild the report when nothing changed.
`/api/tasks` pages (`top` at most `MAX_PAGE`, `offset`). User errors (unknown key, bad or inverted time,
an odd number, a missing dataset) are 400 with a one-line `detail`, never 500.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import swagger_ui_bundle
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from analyzer.analysis import Analysis
from analyzer.cost import CostQuery, cost_rows, totals
from analyzer.dataset import AnalyzerError, open_dataset, resolve_data_dir
from analyzer.output import plain, plain_tree
from analyzer.remote import remote_location
from analyzer.report import build_report
from analyzer.task_queries import TaskQuery, count_tasks, list_tasks, resolve_task_ref, task_stats, task_tree
from analyzer.timeparse import TimeRange

MAX_PAGE = 1000  # tasks per /api/tasks page
DEFAULT_PAGE = 100
MAX_TOP = 100_000  # groups per /api/cost answer
MAX_OFFSET = 1_000_000_000
MAX_MEMO = 256  # answers kept per dataset state
SWAGGER_PATH = "/static/swagger-ui"
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


@dataclass
class Snapshot:
    """One state of the dataset, opened once: its Analysis and the answers already computed for it."""

    fingerprint: tuple
    analysis: Analysis
    lock: threading.Lock = field(default_factory=threading.Lock)  # one DuckDB connection: one query at a time
    memo: dict[Any, Any] = field(default_factory=dict)

    def answer(self, key: Any, compute: Callable[[Analysis], T]) -> T:
        with self.lock:
            if len(self.memo) >= MAX_MEMO:  # many different questions: start over rather than grow
                self.memo.clear()
            if key not in self.memo:
                self.memo[key] = compute(self.analysis)
            return self.memo[key]

    def run(self, compute: Callable[[Analysis], T]) -> T:
        with self.lock:
            return compute(self.analysis)


REMOTE_REFRESH_SECONDS = 30.0


class DatasetCache:
    """The current Snapshot of a dataset: reopened only when its files (or the price files) changed."""

    def __init__(self, data: Path | None, prices_file: Path | None, gpu_prices_file: Path | None):
        # s3://: the local copy is brought up to date at most every REMOTE_REFRESH_SECONDS (analyzer/remote.py)
        self.remote = remote_location(data if data is not None else os.environ.get("AGENTMETER_DATA"))
        self.root = resolve_data_dir(data)
        self._synced_at = time.monotonic()
        self.prices_file = prices_file
        self.gpu_prices_file = gpu_prices_file
        self._current: Snapshot | None = None
        self._lock = threading.Lock()
        self.opened = 0  # how many times the dataset was (re)opened: tests read it

    def snapshot(self) -> Snapshot:
        with self._lock:
            if self.remote is not None and time.monotonic() - self._synced_at >= REMOTE_REFRESH_SECONDS:
                self.root = resolve_data_dir(self.remote)
                self._synced_at = time.monotonic()
            if not self.root.is_dir():
                open_dataset(self.root)  # the one-line "no dataset at ..." error
            fingerprint = dataset_fingerprint(self.root, self.prices_file, self.gpu_prices_file)
            if self._current is None or self._current.fingerprint != fingerprint:
                analysis = Analysis(open_dataset(self.root), self.prices_file, self.gpu_prices_file)
                self._current = Snapshot(fingerprint, analysis)
                self.opened += 1
            return self._current


def _rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: plain(v) for k, v in row.items()} for row in rows]


def _one_line(err: RequestValidationError) -> str:
    parts = []
    for problem in err.errors():
        where = ".".join(str(p) for p in problem.get("loc", ()) if p != "query")
        parts.append(f"{where}: {problem.get('msg', 'invalid')}")
    return "bad query: " + "; ".join(parts)


def create_app(
    data: Path | None = None, prices_file: Path | None = None, gpu_prices_file: Path | None = None
) -> FastAPI:
    cache = DatasetCache(data, prices_file, gpu_prices_file)
    app = FastAPI(
        title="agentmeter",
        description="Cost, tasks and GPU time of AI agents from an agentmeter dataset (the `analyze` CLI's answers).",
        docs_url=None,
        redoc_url=None,
    )
    app.state.cache = cache
    app.mount(SWAGGER_PATH, StaticFiles(directory=swagger_ui_bundle.swagger_ui_path), name="swagger-ui")

    @app.exception_handler(AnalyzerError)
    async def user_error(_: Request, err: AnalyzerError) -> JSONResponse:
        return JSONResponse(status_code=400, content={"detail": str(err)})

    @app.exception_handler(RequestValidationError)
    async def bad_query(_: Request, err: RequestValidationError) -> JSONResponse:
        return JSONResponse(status_code=400, content={"detail": _one_line(err)})

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title="agentmeter API",
            swagger_js_url=f"{SWAGGER_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{SWAGGER_PATH}/swagger-ui.css",
            swagger_favicon_url=f"{SWAGGER_PATH}/favicon-32x32.png",
        )

    @app.get("/api/cost")
    def cost(
        by: Annotated[
            list[str] | None,
            Query(description="group keys: agent, task, model, ..., day, week, month, label:KEY; none: totals"),
        ] = None,
        since: str | None = None,
        until: str | None = None,
        where: Annotated[list[str] | None, Query(description="KEY=VALUE filters")] = None,
        top: Annotated[int | None, Query(ge=1, le=MAX_TOP)] = None,
        direct: Annotated[bool, Query(description="with by=task: the task's own trace only")] = False,
    ) -> list[dict[str, Any]]:
        query = CostQuery.from_text(by or [], since, until, where, top, direct)
        return _rows(cache.snapshot().run(lambda a: cost_rows(a, query).rows))

    @app.get("/api/totals")
    def headline(since: str | None = None, until: str | None = None) -> dict[str, Any]:
        window = TimeRange.parse(since, until)
        return {k: plain(v) for k, v in cache.snapshot().run(lambda a: totals(a, window)).items()}

    @app.get("/api/tasks")
    def tasks(
        since: str | None = None,
        until: str | None = None,
        agent: str | None = None,
        status: Literal["failed", "ok"] | None = None,
        sort: Annotated[
            Literal["start", "cost"] | None, Query(description="default: cost with top, else start")
        ] = None,
        top: Annotated[int | None, Query(ge=1, le=MAX_PAGE, description=f"page size (default {DEFAULT_PAGE})")] = None,
        offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    ) -> dict[str, Any]:
        query = TaskQuery(
            window=TimeRange.parse(since, until),
            agent=agent,
            status=status,
            sort=sort or ("cost" if top else "start"),
            limit=top or DEFAULT_PAGE,
            offset=offset,
        )
        snapshot = cache.snapshot()
        total = snapshot.answer(("task-count", query.window, agent, status), lambda a: count_tasks(a, query))
        page = snapshot.answer(("tasks", query), lambda a: _rows(list_tasks(a, query)))
        following = offset + len(page)
        return {
            "total": total,
            "offset": offset,
            "top": query.limit,
            "next_offset": following if following < total else None,
            "tasks": page,
        }

    @app.get("/api/tasks/{task_ref}")
    def task(task_ref: str) -> dict[str, Any]:
        return plain_tree(cache.snapshot().run(lambda a: task_tree(a, resolve_task_ref(a, task_ref))))

    @app.get("/api/task-stats")
    def stats(
        by: Literal["agent", "day", "week", "month"] = "agent", since: str | None = None, until: str | None = None
    ) -> list[dict[str, Any]]:
        window = TimeRange.parse(since, until)
        return _rows(cache.snapshot().answer(("stats", by, window), lambda a: task_stats(a, by, window)))

    @app.get("/report", response_class=HTMLResponse)
    def report() -> HTMLResponse:
        return HTMLResponse(cache.snapshot().answer("report", build_report))

    return app
