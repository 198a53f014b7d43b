"""The web console in a real browser: Debian's chromium (`make browser`) driven by Playwright, against
`analyze serve`'s app on the demo's dataset (a real receiver, the loadgen workload with linked sub-agent
traces, GPU slices), served once on a loopback port for the whole session.

Every page renders with no console error and no failed request (and asks nothing of any host but the
server); the numbers a page shows equal the JSON of the `analyze` command the page names for them (run
here as written there), before and after a filter changes; a task page shows its linked sub-agents' calls
and one span's attributes; a URL reproduces the view it was copied from.
"""

from __future__ import annotations

import contextlib
import io
import json
import shlex
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import uvicorn
from conftest import DemoRun
from playwright import sync_api as playwright_api

from analyzer.analysis import Analysis
from analyzer.api import create_app
from analyzer.cli import main
from analyzer.console.app import newest_call
from analyzer.console.filters import iso

pytestmark = pytest.mark.slow
PAGES = ("/", "/tasks", "/agents", "/gpu", "/prices", "/budgets")
# The Budgets page's file: the demo's orchestrator past a tiny monthly budget, its namespace well within one.
BUDGETS = """budgets:
  - scope: agent=research-planner
    period: month
    amount_usd: 0.000001
  - name: research-namespace
    scope: namespace=research
    period: month
    amount_usd: 1000000
"""


@pytest.fixture(scope="session")
def demo_data(demo_run: DemoRun) -> Path:
    assert demo_run.returncode == 0, demo_run.stdout + demo_run.stderr
    return demo_run.data_dir


@pytest.fixture(scope="session")
def base(demo_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The console and API of the demo's dataset on a loopback port (one server for every test)."""
    budgets = tmp_path_factory.mktemp("budgets") / "budgets.yaml"
    budgets.write_text(BUDGETS)
    app = create_app(demo_data, budgets_file=budgets)
    # port 0: the kernel picks a free port as it binds (nothing can take it in between); read it back
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "the console did not start"
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=30)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    from analyzer.console.browser import launch

    with playwright_api.sync_playwright() as playwright:
        chromium = launch(playwright)
        yield chromium
        chromium.close()


class Watched:
    """A page with every console message, page error, request and failed response recorded."""

    def __init__(self, page: Any, base: str):
        self.page, self.base = page, base
        self.errors: list[str] = []
        self.requests: list[str] = []
        page.on("console", lambda m: self.errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))
        page.on("request", lambda r: self.requests.append(r.url))
        page.on("requestfailed", lambda r: self.errors.append(f"request failed: {r.url} {r.failure}"))
        page.on("response", lambda r: self.errors.append(f"HTTP {r.status}: {r.url}") if r.status >= 400 else None)

    def goto(self, path: str) -> Any:
        self.page.goto(self.base + path if path.startswith("/") else path)
        self.page.wait_for_load_state("networkidle")
        return self.page

    def check(self) -> None:
        assert self.errors == []
        hosts = {urlparse(url).netloc for url in self.requests if not url.startswith("data:")}
        assert hosts == {urlparse(self.base).netloc}, hosts  # nothing from a CDN or any other host


@pytest.fixture
def watched(browser: Any, base: str) -> Iterator[Watched]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = Watched(context.new_page(), base)
    yield page
    context.close()


def cli_json(command: str) -> Any:
    """Run an `analyze ...` command as the page prints it; its JSON output."""
    args = shlex.split(command)
    assert args[0] == "analyze"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(args[1:]) == 0
    return json.loads(out.getvalue())


def navigate(page: Any, action: Any) -> None:
    """Do what loads another page (a filter applied, a link followed) and wait until it has loaded."""
    with page.expect_navigation():
        action()
    page.wait_for_load_state("networkidle")


def commands(page: Any, section: str) -> list[str]:
    return [c.text_content() for c in page.locator(f"#{section} details.cli code").all()]


def values(locator: Any, figure: str) -> list[Any]:
    return [json.loads(v) for v in locator.locator(f'[data-figure="{figure}"]').evaluate_all(
        "nodes => nodes.map(n => n.dataset.value)")]  # fmt: skip


def group_rows(page: Any) -> list[dict[str, Any]]:
    rows = []
    for row in page.locator("#by-group tbody tr").all():
        figures = {f: values(row, f)[0] for f in ("total_cost_usd", "llm_calls", "input_tokens", "unpriced_calls")}
        rows.append({"group": row.get_attribute("data-group") or None, **figures})
    return rows


def cli_group_rows(rows: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    return [
        {
            "group": None if r[key] is None else str(r[key]),
            **{f: r[f] for f in ("total_cost_usd", "llm_calls", "input_tokens", "unpriced_calls")},
        }  # fmt: skip
        for r in rows
    ]


def test_every_page_renders_without_errors_and_only_from_the_server(watched: Watched, demo_data: Path) -> None:
    task = cli_json(f"analyze tasks --top 1 --data {demo_data} --format json")[0]["task_id"]
    for path in (*PAGES, f"/tasks/{task[:16]}"):
        page = watched.goto(path)
        assert page.locator("#error").count() == 0, path
        assert page.locator("main section").count() >= 1, path
        for chart in page.locator("div.chart").all():  # plotly drew every chart
            assert chart.get_attribute("data-drawn") == "true", path
            assert chart.locator("svg.main-svg").count() > 0
    assert any(url.endswith("/console/plotly.min.js") for url in watched.requests)
    watched.check()


def test_overview_figures_are_the_cli_json_and_follow_the_filters(watched: Watched) -> None:
    page = watched.goto("/")
    assert page.locator("select[name=range]").input_value() == "7d"  # the default: the last 7 days with data
    headline_cli = commands(page, "headline")[0]
    assert "--since" in headline_cli
    expected = cli_json(headline_cli)[0]
    for name in ("total_cost_usd", "token_cost_usd", "gpu_busy_cost_usd", "llm_calls", "input_tokens",
                 "unpriced_calls"):  # fmt: skip
        assert values(page.locator("#headline"), name) == [expected[name]], name
    by_agent = cli_json(commands(page, "trend")[1])
    assert group_rows(page) == cli_group_rows(by_agent, "agent") and len(by_agent) > 3

    # group by model: the table becomes `analyze cost --by model`
    navigate(page, lambda: page.select_option("#group-by", "model"))
    assert "by=model" in page.url
    by_model = cli_json(commands(page, "trend")[1])
    assert "--by model" in commands(page, "trend")[1]
    assert group_rows(page) == cli_group_rows(by_model, "model") != cli_group_rows(by_agent, "agent")

    # all time: the headline becomes `analyze cost` without a window
    navigate(page, lambda: page.select_option("select[name=range]", "all"))
    assert "range=all" in page.url and "by=model" in page.url
    headline_cli = commands(page, "headline")[0]
    assert "--since" not in headline_cli
    every = cli_json(headline_cli)[0]
    assert values(page.locator("#headline"), "llm_calls") == [every["llm_calls"]]
    assert values(page.locator("#headline"), "total_cost_usd") == [every["total_cost_usd"]]

    # a label: any resource attribute
    page.select_option("#group-by", "label")
    page.fill("input[name=label]", "k8s.namespace.name")
    navigate(page, lambda: page.press("input[name=label]", "Enter"))
    labelled = cli_json(commands(page, "trend")[1])
    assert group_rows(page) == cli_group_rows(labelled, "label:k8s.namespace.name")
    assert {r["group"] for r in group_rows(page)} >= {"research", "support"}
    watched.check()


def test_tasks_filter_and_sort_give_the_cli_listing(watched: Watched) -> None:
    page = watched.goto("/tasks?range=all")

    def listed() -> list[tuple[str, Any]]:
        ids = page.locator("#task-list tbody tr").evaluate_all("rows => rows.map(r => r.dataset.task)")
        return list(zip(ids, values(page.locator("#task-list"), "inclusive_cost_usd"), strict=True))

    def from_cli() -> list[tuple[str, Any]]:
        return [(r["task_id"], r["inclusive_cost_usd"]) for r in cli_json(commands(page, "tasks")[0])]

    everything = listed()
    assert everything == from_cli() and len(everything) > 3
    total = int(page.locator("#task-total").get_attribute("data-value"))
    navigate(page, lambda: page.select_option("#agent-filter", "support-triage"))
    assert "agent=support-triage" in page.url
    assert listed() == from_cli() and 0 < len(listed()) < len(everything)
    assert int(page.locator("#task-total").get_attribute("data-value")) < total
    navigate(page, lambda: page.locator('a[data-sort="cost"]').click())  # most expensive first
    assert "sort=cost" in page.url and "--sort cost --desc" in commands(page, "tasks")[0]
    costs = [c for _, c in listed()]
    assert listed() == from_cli() and costs == sorted(costs, reverse=True)
    navigate(page, lambda: page.locator('a[data-sort="cost"]').click())  # again: cheapest first
    assert "--sort cost --asc" in commands(page, "tasks")[0] and listed() == from_cli()
    watched.check()


def test_task_page_shows_linked_sub_agent_calls_down_to_a_span(watched: Watched, demo_data: Path) -> None:
    task = cli_json(f"analyze tasks --top 1 --data {demo_data} --format json")[0]["task_id"]
    page = watched.goto(f"/tasks/{task[:12]}")  # a prefix, as the CLI takes it
    tree = cli_json(commands(page, "task")[0])
    assert tree["task_id"] == task
    assert values(page.locator(".task-head"), "inclusive_cost_usd") == [tree["inclusive_cost_usd"]]
    assert values(page.locator(".task-head"), "direct_cost_usd") == [tree["direct_cost_usd"]]

    def runs(node: dict) -> list[dict]:
        return [node, *(r for child in node["children"] for r in runs(child))]

    linked = [r for r in runs(tree["root"]) if r["trace_id"] != task and r["calls"]]
    assert linked, "the demo's most expensive task has sub-agents in linked traces"
    for run in linked:
        shown = page.locator(f'details.run[data-trace="{run["trace_id"]}"]').first
        assert shown.get_attribute("data-agent") == run["agent"]
        spans = shown.locator(":scope > table.calls tbody tr").evaluate_all("rows => rows.map(r => r.dataset.span)")
        assert spans == [call["span_id"] for call in run["calls"]]
        assert values(shown.locator(":scope > summary"), "direct_total_cost_usd") == [run["direct"]["total_cost_usd"]]

    # one call of a sub-agent, down to its attributes
    call = next(c for c in linked[0]["calls"] if c["kind"] == "llm")
    navigate(page, lambda: page.locator(f'tr[data-span="{call["span_id"]}"] a.span-link').click())
    assert f"span={call['trace_id']}:{call['span_id']}" in page.url
    panel = page.locator("#span")
    assert call["span_id"] in panel.locator("h2").text_content()
    assert "otel.scope.name" in panel.locator("#span-attributes").text_content()
    assert page.locator(f'tr.selected[data-span="{call["span_id"]}"]').count() == 1
    watched.check()


def test_a_deep_link_reproduces_the_view(browser: Any, watched: Watched) -> None:
    page = watched.goto("/")
    navigate(page, lambda: page.select_option("#group-by", "provider"))
    navigate(page, lambda: page.select_option("select[name=every]", "hour"))
    link, rows = page.url, group_rows(page)
    headline = values(page.locator("#headline"), "total_cost_usd")
    other = browser.new_context()
    try:
        fresh = Watched(other.new_page(), watched.base)
        shared = fresh.goto(link)
        assert group_rows(shared) == rows and values(shared.locator("#headline"), "total_cost_usd") == headline
        assert shared.locator("#group-by").input_value() == "provider"
        assert shared.locator("select[name=every]").input_value() == "hour"
        fresh.check()
    finally:
        other.close()
    watched.check()


def test_agents_gpu_and_prices_pages_are_the_cli_json(watched: Watched) -> None:
    page = watched.goto("/agents?range=all")
    costs = cli_json(commands(page, "costs")[0])
    assert values(page.locator("#agent-costs"), "total_cost_usd") == [r["total_cost_usd"] for r in costs]
    stats = {r["agent"]: r for r in cli_json(commands(page, "costs")[1])}
    for agent, stat in stats.items():
        row = page.locator(f'#agent-costs tr[data-agent="{agent}"]')
        assert values(row, "p95_task_cost_usd") == [stat["p95_task_cost_usd"]]
        assert values(row, "tasks") == [stat["tasks"]]
    navigate(page, lambda: page.select_option("#recommend-select", "research-planner"))
    assert page.locator("#recommend-agent").text_content() == "research-planner"
    command = shlex.split(commands(page, "recommend")[0])
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(command[1:]) == 0
    assert page.locator("#recommend-yaml").text_content() == out.getvalue()  # the YAML, byte for byte

    page = watched.goto("/gpu?range=all")
    slices = cli_json(commands(page, "slices")[0])
    assert slices, "the demo holds GPU slices"
    for name in ("allocated_cost_usd", "busy_cost_usd", "idle_cost_usd"):
        assert values(page.locator("#slice-table"), name) == [r[name] for r in slices]
    namespaces = cli_json(commands(page, "slices")[1])
    assert values(page.locator("#namespace-table"), "idle_cost_usd") == [r["idle_cost_usd"] for r in namespaces]

    page = watched.goto("/prices?range=all")
    prices = cli_json(commands(page, "prices")[0])
    priced = [r for r in prices if r["source"] is not None]
    assert values(page.locator("#price-table"), "token_cost_usd") == [r["token_cost_usd"] for r in priced]
    unpriced = [r for r in prices if r["source"] is None]
    assert unpriced and values(page.locator("#unpriced-models"), "unpriced_calls") == [
        r["unpriced_calls"] for r in unpriced
    ]
    watched.check()


def analyze_json(command: str, exit_code: int) -> Any:
    """Run an `analyze ...` command as the page prints it, expecting `exit_code`; its JSON output."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(shlex.split(command)[1:]) == exit_code
    return json.loads(out.getvalue())


def test_budgets_and_runaway_tasks_are_the_cli_json_and_follow_the_limits(watched: Watched, demo_data: Path) -> None:
    analysis = Analysis.open(demo_data)
    analysis.install_charges()
    newest = newest_call(analysis)
    analysis.con.close()
    at = iso(newest.replace(microsecond=0) + timedelta(seconds=1))  # every call of the demo counted
    page = watched.goto(f"/budgets?range=all&at={at}&max_llm_calls=2")
    (budget_cli,) = commands(page, "budgets")
    assert f"--at {at}" in budget_cli
    expected = analyze_json(budget_cli, 3)  # a budget is breached: exit code 3, as a cron job sees it
    table = page.locator("#budget-table")
    shown = [(r.get_attribute("data-budget"), r.get_attribute("data-status")) for r in table.locator("tbody tr").all()]
    assert shown == [(e["budget"], e["status"]) for e in expected]
    assert [status for _, status in shown] == ["breached", "ok"]
    for name in ("amount_usd", "spend_usd", "burn_rate_usd_per_day", "forecast_usd"):
        assert values(table, name) == [e[name] for e in expected], name
    assert all(e["spend_usd"] > 0 for e in expected)

    def runaway_rows() -> tuple[list[Any], list[Any]]:
        (command,) = commands(page, "runaway")
        cli = [(r["task_id"], r["reason"], r["value"], r["threshold"]) for r in cli_json(command)]
        rows = page.locator("#runaway-table tbody tr").all()
        shown = [
            (r.get_attribute("data-task"), r.get_attribute("data-reason"), *values(r, "value"), *values(r, "threshold"))
            for r in rows
        ]
        return cli, shown

    assert "--max-llm-calls 2" in commands(page, "runaway")[0]
    cli, shown = runaway_rows()
    assert cli and shown == cli  # every demo task makes more than 2 LLM calls
    # a higher limit in the form: the tasks past it, as the CLI lists them with that option
    llm_calls = sorted(value for _, reason, value, _ in cli if reason == "llm_calls")
    limit = int(llm_calls[len(llm_calls) // 2])
    page.fill('input[name="max_llm_calls"]', str(limit))
    navigate(page, lambda: page.click("#budgets-apply"))
    assert f"--max-llm-calls {limit}" in commands(page, "runaway")[0]
    higher, shown = runaway_rows()
    assert shown == higher and len(higher) < len(cli)
    assert all(value > limit for _, reason, value, _ in higher if reason == "llm_calls")
    task = page.locator("#runaway-table tbody tr").first.get_attribute("data-task") if higher else cli[0][0]
    page = watched.goto(f"/tasks/{task}")  # a runaway task's link: its page
    assert page.locator("#error").count() == 0
    watched.check()


def test_a_bad_filter_is_a_clear_400_page(watched: Watched) -> None:
    response = watched.page.goto(watched.base + "/?since=2026-12-05&until=2026-12-01")
    assert response.status == 400
    assert "is not before --until" in watched.page.locator("#error").text_content()
    response = watched.page.goto(watched.base + "/budgets?max_llm_calls=0")
    assert response.status == 400
    assert watched.page.locator("#error").text_content() == "bad max_llm_calls '0': >= 1"
    response = watched.page.goto(watched.base + "/tasks/ffffffffffff")
    assert response.status == 404
    assert "unknown task id" in watched.page.locator("#error").text_content()
