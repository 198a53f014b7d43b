"""HTTP API (FastAPI) over a dataset: `analyze serve --data DIR --port N`.

    GET /api/cost?by=agent[&by=day][&since=7d][&until=...][&where=namespace=team-a][&top=N][&inclusive=true]
    GET /api/tasks[?since=...&until=...&agent=NAME]
    GET /report                      the HTML report (self-contained)
    GET /api/dataset                 what every answer is read from: {"root", "skipped_files": [{"path",
                                     "reason"}], "duplicate_span_rows"} (files left out as unreadable, copies
                                     of spans left out)

Each request opens the dataset afresh (its own DuckDB connection), so new Parquet files are seen and
requests do not share state. User errors (unknown key, bad time, missing dataset) are 400 with a
one-line `detail`.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse

from analyzer.cost import CostQuery, cost_rows
from analyzer.dataset import AnalyzerError, open_dataset
from analyzer.report import build_report
from analyzer.timeparse import parse_time


def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    return value


def _rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: _jsonable(v) for k, v in row.items()} for row in rows]


def create_app(data: Path | None = None, prices_file: Path | None = None) -> FastAPI:
    app = FastAPI(title="agentmeter", description="Cost and tasks of AI agents from an agentmeter dataset.")

    @app.exception_handler(AnalyzerError)
    async def user_error(_: Request, err: AnalyzerError) -> JSONResponse:
        return JSONResponse(status_code=400, content={"detail": str(err)})

    @app.get("/api/cost")
    def cost(
        by: Annotated[list[str], Query(description="group keys: agent, task, model, provider, namespace, ...")],
        since: str | None = None,
        until: str | None = None,
        where: Annotated[list[str] | None, Query(description="KEY=VALUE filters")] = None,
        top: Annotated[int | None, Query(ge=1)] = None,
        inclusive: bool = False,
    ) -> list[dict[str, Any]]:
        query = CostQuery.from_text(by, since, until, where, top, inclusive)
        rows, _ = cost_rows(open_dataset(data), query, prices_file)
        return _rows(rows)

    @app.get("/api/tasks")
    def tasks(since: str | None = None, until: str | None = None, agent: str | None = None) -> list[dict[str, Any]]:
        from analyzer.cli_tasks import list_tasks, prepare  # the task listing of `analyze tasks`

        con = open_dataset(data).con
        prepare(con, prices_file)
        return _rows(list_tasks(con, parse_time(since), parse_time(until), agent))

    @app.get("/api/dataset")
    def dataset() -> dict[str, Any]:
        opened = open_dataset(data)
        return {
            "root": str(opened.root),
            "skipped_files": [{"path": s.path, "reason": s.reason} for s in opened.skipped_files],
            "duplicate_span_rows": opened.duplicate_span_rows,
        }

    @app.get("/report", response_class=HTMLResponse)
    def report() -> HTMLResponse:
        return HTMLResponse(build_report(open_dataset(data), prices_file))

    return app
