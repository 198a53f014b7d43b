"""The console's pages and their sections: the one list the app routes, the nav shows, and a new page or
section is added to.

A page is a URL (its filters in the query string), a template, a parser from the URL to the page's typed
filters, and sections. A section is a partial template (`templates/sections/`) and a function
`(Analysis, filters) -> data` that calls the query layer; its answer is computed once per dataset state and
filters (`Snapshot.answer`). To add a section (say, a chart on the Overview): write the function and the
partial, and append a `Section` to that page's `sections`. To add a page: a module with its filters, parser
and sections, a template extending `page.html`, and an entry in `PAGES` (analyzer/console/app.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from analyzer.analysis import Analysis
from analyzer.console.filters import Cli


@dataclass(frozen=True)
class Source:
    """The dataset and price files the server answers for: what the CLI needs to ask the same."""

    data: Path
    prices: Path | None = None
    gpu_prices: Path | None = None
    budgets: Path | None = None  # the budgets file (analyze serve --budgets): the Budgets page

    def cli(self, *args: str) -> Cli:
        return Cli.of(*args, data=self.data, prices=self.prices, gpu_prices=self.gpu_prices)


@dataclass(frozen=True)
class Inputs:
    """What a page's parser reads besides the URL's query: the path parameters, the dataset's newest call."""

    query: Mapping[str, str]
    path: Mapping[str, str]
    newest: datetime | None
    source: Source

    def get(self, name: str) -> str | None:
        value = self.query.get(name)
        return value if value not in (None, "") else None


@dataclass(frozen=True)
class Section:
    id: str  # the HTML id (a link to page#id shows it)
    title: str
    template: str  # under templates/sections/
    build: Callable[[Analysis, Any], Any]  # (analysis, the page's filters) -> what the template shows


@dataclass(frozen=True)
class Page:
    path: str  # the route ("/tasks/{task_ref}")
    title: str
    template: str
    parse: Callable[[Inputs], Any]  # -> the page's filters: frozen, hashable (a memo key)
    sections: tuple[Section, ...]
    nav: bool = True  # listed in the navigation bar
    charts: bool = True  # loads plotly.js
    # its questions read only the charges: answered before the snapshot has resolved the tasks (the first page)
    charges_only: bool = False
