"""The web console: server-rendered pages (Jinja2) over the query layer, served by `analyze serve` at `/`
beside the JSON API (`/api/...`), in one process.

Each page (`PAGES`) is a URL whose query string is its whole state; each of its sections calls the query
functions the CLI calls, once per dataset state and filters (`Snapshot.answer`), and says which `analyze`
command gives the same figures. plotly.js comes from the plotly package and the console's own CSS and
JavaScript from `static/`: nothing is loaded from elsewhere, so it works offline.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import plotly
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from plotly.offline import get_plotlyjs_version

from analyzer.analysis import Analysis
from analyzer.console import agents, budgets, gpu, overview, prices, tasks
from analyzer.console.filters import RANGE_LABELS, RANGES, url
from analyzer.console.pages import Inputs, Page, Source
from analyzer.dataset import AnalyzerError
from analyzer.output import money, plain
from analyzer.snapshot import DatasetCache, Snapshot

HERE = Path(__file__).resolve().parent
STATIC = "/console/static"
PLOTLY_JS = Path(plotly.__file__ or "").parent / "package_data" / "plotly.min.js"

PAGES: tuple[Page, ...] = (
    Page("/", "Overview", "overview.html", overview.parse, overview.SECTIONS, charges_only=True),
    Page("/tasks", "Tasks", "tasks.html", tasks.parse_list, tasks.LIST_SECTIONS, charts=False),
    Page("/tasks/{task_ref}", "Task", "task.html", tasks.parse_task, tasks.TASK_SECTIONS, nav=False, charts=False),
    Page("/agents", "Agents", "agents.html", agents.parse, agents.SECTIONS),
    Page("/gpu", "GPU", "gpu.html", gpu.parse, gpu.SECTIONS),
    Page("/prices", "Prices", "prices.html", prices.parse, prices.SECTIONS, charts=False),
    Page("/budgets", "Budgets", "budgets.html", budgets.parse, budgets.SECTIONS, charts=False),
)


def newest_call(analysis: Analysis) -> datetime | None:
    """The start of the dataset's newest charged call: where the time-range presets count back from."""
    row = analysis.con.execute("SELECT max(start_time) FROM charges").fetchone()
    return row[0] if row else None


def _usd(value: Any) -> str:
    return "-" if value is None else money(value)


def _count(value: Any) -> str:
    return "-" if value is None else f"{value:,}"


def _number(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    return f"{float(value):,.{digits}f}"


def _pct(value: Any, digits: int = 1) -> str:
    return "-" if value is None else f"{float(value) * 100:.{digits}f}%"


def _value(value: Any) -> str:
    """The exact value as the CLI's JSON writes it (data-value attributes: what tests compare)."""
    plain_value = plain(value)
    if isinstance(value, Decimal):
        plain_value = float(value)
    return json.dumps(plain_value)


def templates() -> Jinja2Templates:
    env = Jinja2Templates(directory=str(HERE / "templates"))
    env.env.filters.update(usd=_usd, count=_count, number=_number, pct=_pct, value=_value)
    env.env.globals.update(url=url, static=STATIC, ranges=list(RANGES), range_labels=RANGE_LABELS)
    return env


def mount(app: FastAPI, cache: DatasetCache, source: Source) -> None:
    """Add the console's pages and assets to the API's app."""
    views = templates()
    app.mount(STATIC, StaticFiles(directory=str(HERE / "static")), name="console-static")
    nav = [page for page in PAGES if page.nav]

    @app.get("/console/plotly.min.js", include_in_schema=False)
    def plotly_js() -> FileResponse:
        return FileResponse(PLOTLY_JS, media_type="text/javascript", headers={"Cache-Control": "max-age=86400"})

    def route(page: Page) -> None:
        def handler(request: Request) -> HTMLResponse:
            context: dict[str, Any] = {
                "page": page,
                "nav": nav,
                "source": source,
                "plotly_version": get_plotlyjs_version(),
                "sections": [],
                "filters": None,
                "error": None,
                "refreshing": False,
                "snapshot": None,
            }
            status = 200
            try:
                snapshot, refreshing = cache.latest()
                context.update(snapshot=snapshot, refreshing=refreshing)
                context["filters"], context["sections"] = _build(page, snapshot, request, source)
            except AnalyzerError as err:
                context["error"] = str(err)
                status = 404 if "unknown task id" in str(err) else 400
            return views.TemplateResponse(request, page.template, context, status_code=status)

        app.add_api_route(page.path, handler, methods=["GET"], response_class=HTMLResponse, include_in_schema=False)

    for page in PAGES:
        route(page)


def _build(page: Page, snapshot: Snapshot, request: Request, source: Source) -> tuple[Any, list]:
    with snapshot.lock:  # the page's questions together: the snapshot's preparation goes before or after them
        newest = snapshot.answer("newest-call", newest_call, charges_only=True)
        inputs = Inputs(dict(request.query_params), dict(request.path_params), newest, source)
        filters = page.parse(inputs)
        sections = []
        for section in page.sections:
            compute = _computation(section.build, filters)
            data = snapshot.answer((page.path, section.id, filters), compute, charges_only=page.charges_only)
            sections.append((section, data))
        return filters, sections


def _computation(build: Callable[[Analysis, Any], Any], filters: Any) -> Callable[[Analysis], Any]:
    """A section's answer for these filters, as Snapshot.answer computes it."""
    return lambda analysis: build(analysis, filters)
