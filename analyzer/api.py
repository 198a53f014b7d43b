"""HTTP API (FastAPI) over a dataset: `analyze serve --data DIR --port N`.

    GET /api/cost?by=agent[&by=week][&since=7d][&until=...][&where=label:team=search][&top=N][&direct=true]
    GET /api/totals[?since=...&until=...]          the headline figures (the report's)
    GET /api/tasks[?since&until&agent&status=failed&sort=start|cost&top=N&offset=K]
    GET /api/tasks/{id or unique prefix}           one task as a tree of agent runs
    GET /api/task-stats?by=agent|day|week|month    tasks, failures, cost-per-task distribution
    GET /report                                     the HTML report (self-contained)
    GET /docs                                       the OpenAPI docs (Swagger UI served from here: offline)
    GET /api/dataset                                what the answers are read from: {"root", "skipped_files":
                                                    [{"path", "reason"}], "duplicate_span_rows"} (files left out
                                                    as unreadable, rows left out as copies of a span)
    GET /, /tasks, /tasks/{id}, /agents, /gpu, /prices   the web console (analyzer/console/)

Every answer is the CLI's JSON for the same question (the same query functions, `analyzer.analysis`).
The dataset is opened once and kept, with the answers already given (the report, task listings), until its
files change (`DatasetCache`: keyed on the file listing, sizes and modification times, and the price
files'), so a request does not re-resolve 100 k tasks nor rebuild the report when nothing changed.
`/api/tasks` pages (`top` at most `MAX_PAGE`, `offset`). User errors (unknown key, bad or inverted time,
an odd number, a missing dataset) are 400 with a one-line `detail`, never 500.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import swagger_ui_bundle
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from analyzer.cost import CostQuery, cost_rows, totals
from analyzer.dataset import AnalyzerError
from analyzer.output import plain, plain_tree
from analyzer.report import build_report
from analyzer.snapshot import DatasetCache
from analyzer.task_queries import TaskQuery, count_tasks, list_tasks, resolve_task_ref, task_stats, task_tree
from analyzer.timeparse import TimeRange

MAX_PAGE = 1000  # tasks per /api/tasks page
DEFAULT_PAGE = 100
MAX_TOP = 100_000  # groups per /api/cost answer
MAX_OFFSET = 1_000_000_000
SWAGGER_PATH = "/static/swagger-ui"


def _rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: plain(v) for k, v in row.items()} for row in rows]


def _one_line(err: RequestValidationError) -> str:
    parts = []
    for problem in err.errors():
        where = ".".join(str(p) for p in problem.get("loc", ()) if p != "query")
        parts.append(f"{where}: {problem.get('msg', 'invalid')}")
    return "bad query: " + "; ".join(parts)


def create_app(
    data: Path | None = None,
    prices_file: Path | None = None,
    gpu_prices_file: Path | None = None,
    *,
    console: bool = True,
    budgets_file: Path | None = None,
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
            Literal["start", "cost", "calls", "agent", "depth", "status"] | None,
            Query(description="default: cost with top, else start"),
        ] = None,
        desc: Annotated[bool | None, Query(description="default: most first for cost, calls, depth")] = None,
        min_cost: Annotated[float | None, Query(ge=0)] = None,
        min_depth: Annotated[int | None, Query(ge=0)] = None,
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
            desc=desc,
            min_cost=min_cost,
            min_depth=min_depth,
        )
        snapshot = cache.snapshot()
        total = snapshot.answer(
            ("task-count", query.window, agent, status, min_cost, min_depth), lambda a: count_tasks(a, query)
        )
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

    @app.get("/api/dataset")
    def dataset() -> dict[str, Any]:
        opened = cache.snapshot().analysis.dataset
        return {
            "root": str(opened.root),
            "skipped_files": [{"path": s.path, "reason": s.reason} for s in opened.skipped_files],
            "duplicate_span_rows": opened.duplicate_span_rows,
        }

    @app.get("/report", response_class=HTMLResponse)
    def report() -> HTMLResponse:
        return HTMLResponse(cache.snapshot().answer("report", build_report))

    if console:
        from analyzer.console.app import mount  # jinja2 and the pages: only a server with the console pays
        from analyzer.console.pages import Source

        mount(app, cache, Source(cache.root, prices_file, gpu_prices_file, budgets_file))

    return app
