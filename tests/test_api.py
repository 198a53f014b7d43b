"""The HTTP API (FastAPI TestClient over httpx, and `analyze serve` as a real process): every answer is the
CLI's JSON, pages are bounded, odd values are 400, the docs work offline, the dataset is not re-read (nor
the report rebuilt) while its files do not change."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from analyzer import api
from analyzer.api import MAX_PAGE, create_app
from analyzer.cli import main
from analyzer.synthetic import generate


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("api")
    generate(root, tasks=80, seed=9)
    return root


@pytest.fixture(scope="module")
def client(dataset: Path) -> TestClient:
    return TestClient(create_app(dataset))


def cli_json(capsys, *args: str):
    assert main(list(args)) == 0
    return json.loads(capsys.readouterr().out)


def test_cost_equals_the_cli_json(client: TestClient, dataset: Path, capsys) -> None:
    response = client.get("/api/cost", params={"by": ["agent", "day"], "since": "2026-11-03", "top": 5})
    assert response.status_code == 200
    assert response.json() == cli_json(capsys, "cost", "--data", str(dataset), "--by", "agent", "--by", "day",
                                       "--since", "2026-11-03", "--top", "5", "--format", "json")  # fmt: skip
    assert len(response.json()) == 5 and all(r["day"] >= "2026-11-03" for r in response.json())
    labels = client.get("/api/cost", params={"by": "label:team", "where": "label:cost-center=cc-200"}).json()
    assert sorted(r["label:team"] for r in labels) == ["data", "support"]


def test_cost_by_task_direct_and_inclusive(client: TestClient) -> None:
    inclusive = client.get("/api/cost", params={"by": "task"}).json()
    direct = client.get("/api/cost", params={"by": "task", "direct": "true"}).json()
    assert len(direct) == len(inclusive) == 80
    assert sum(r["llm_calls"] for r in inclusive) > sum(r["llm_calls"] for r in direct)
    assert "inclusive_cost_usd" in inclusive[0] and "direct_cost_usd" in direct[0]


@pytest.mark.parametrize(
    ("path", "params", "detail"),
    [
        ("/api/cost", {"by": "colour"}, "unknown --by key 'colour'"),
        ("/api/cost", {"by": "agent", "since": "someday"}, "bad time 'someday'"),
        ("/api/cost", {"by": "agent", "until": "2026-02-30"}, "bad time '2026-02-30'"),
        ("/api/cost", {"by": "agent", "until": "99999999d"}, "bad time '99999999d': too far in the past"),
        ("/api/cost", {"by": "agent", "since": "2026-11-04", "until": "2026-11-03"}, "--since 2026-11-04T00:00:00Z"),
        ("/api/cost", {"by": "agent", "where": "agent"}, "bad --where 'agent'"),
        ("/api/cost", {"by": "agent", "top": str(10**12)}, "bad query: top: Input should be less than or equal"),
        ("/api/cost", {"by": "agent", "top": "many"}, "bad query: top: Input should be a valid integer"),
        ("/api/tasks", {"top": str(MAX_PAGE + 1)}, "bad query: top: Input should be less than or equal to 1000"),
        ("/api/tasks", {"offset": "-1"}, "bad query: offset: Input should be greater than or equal to 0"),
        (
            "/api/tasks",
            {"sort": "colour"},
            "bad query: sort: Input should be 'start', 'cost', 'calls', 'agent', 'depth' or 'status'",
        ),
        ("/api/tasks/xyz", {}, "malformed task id 'xyz'"),
        ("/api/tasks/" + "ab" * 16, {}, f"unknown task id {'ab' * 16}"),
    ],
)
def test_odd_values_are_400_with_one_line(client: TestClient, path: str, params: dict, detail: str) -> None:
    response = client.get(path, params=params)
    assert response.status_code == 400, response.text
    assert response.json()["detail"].startswith(detail) and "\n" not in response.json()["detail"]


def test_missing_dataset_is_400(tmp_path: Path) -> None:
    response = TestClient(create_app(tmp_path / "gone")).get("/api/cost", params={"by": "agent"})
    assert response.status_code == 400 and response.json()["detail"].startswith("no dataset at")


def test_tasks_pages_are_the_cli_listing(client: TestClient, dataset: Path, capsys) -> None:
    everything = cli_json(capsys, "tasks", "--data", str(dataset), "--format", "json")
    pages, offset = [], 0
    while offset is not None:
        page = client.get("/api/tasks", params={"offset": offset, "sort": "start", "top": 30}).json()
        assert page["total"] == 80 and page["top"] == 30 and len(page["tasks"]) <= 30
        pages += page["tasks"]
        offset = page["next_offset"]
    assert pages == everything
    top = client.get("/api/tasks", params={"top": 10}).json()  # top alone: the most expensive, as the CLI's --top
    assert top["tasks"] == cli_json(capsys, "tasks", "--data", str(dataset), "--top", "10", "--format", "json")
    assert client.get("/api/tasks").json()["top"] == api.DEFAULT_PAGE
    failed = client.get("/api/tasks", params={"status": "failed"}).json()
    assert failed["tasks"] == [t for t in everything if t["status"] == "failed"] and failed["total"] > 0


def test_one_task_by_prefix_is_the_cli_tree(client: TestClient, dataset: Path, capsys) -> None:
    task_id = client.get("/api/tasks", params={"top": 1}).json()["tasks"][0]["task_id"]
    tree = client.get(f"/api/tasks/{task_id[:12]}").json()
    assert tree == cli_json(capsys, "task", task_id[:12], "--data", str(dataset), "--format", "json")
    assert tree["task_id"] == task_id


def test_task_stats_are_the_cli_table(client: TestClient, dataset: Path, capsys) -> None:
    assert client.get("/api/task-stats", params={"by": "agent"}).json() == cli_json(
        capsys, "tasks", "--by", "agent", "--data", str(dataset), "--format", "json"
    )


def test_docs_load_their_assets_from_this_server(client: TestClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200
    assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert assets and all(a.startswith("/") for a in assets), assets  # nothing from another host
    for asset in assets:
        assert client.get(asset).status_code == 200, asset
    assert "'/openapi.json'" in page.text or '"/openapi.json"' in page.text
    assert "/api/tasks" in client.get("/openapi.json").json()["paths"]


def test_answers_are_kept_until_the_dataset_changes(tmp_path: Path, monkeypatch) -> None:
    root = tmp_path / "data"
    generate(root, tasks=20, seed=3)
    built = []
    real = api.build_report
    monkeypatch.setattr(api, "build_report", lambda analysis: built.append(1) or real(analysis))
    client = TestClient(create_app(root))
    first = client.get("/report").text
    calls = client.get("/api/cost", params={"by": "agent"}).json()
    assert client.get("/report").text == first and client.get("/api/tasks").json()["total"] == 20
    assert (len(built), client.app.state.cache.opened) == (1, 1)  # one open, one build, for every request
    generate(tmp_path / "more", tasks=5, seed=4)  # new files appear in the dataset
    for path in (tmp_path / "more" / "spans").rglob("*.parquet"):
        target = root / "spans" / path.parent.name / f"more-{path.name}"
        target.parent.mkdir(parents=True, exist_ok=True)
        path.rename(target)
    assert client.get("/api/tasks").json()["total"] == 25
    client.get("/report")
    assert (len(built), client.app.state.cache.opened) == (2, 2)
    assert sum(r["llm_calls"] for r in client.get("/api/cost", params={"by": "agent"}).json()) > sum(
        r["llm_calls"] for r in calls
    )


def test_analyze_serve_prints_its_url_and_answers(dataset: Path) -> None:
    server = subprocess.Popen(
        [sys.executable, "-m", "analyzer.cli", "serve", "--data", str(dataset), "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert server.stdout is not None
        line = server.stdout.readline()  # printed once it listens
        found = re.match(r"agentmeter console on (http://127\.0\.0\.1:\d+)/ for (\S+) ", line)
        assert found, line
        assert found.group(2) == str(dataset) and f"{found.group(1)}/docs" in line
        response = httpx.get(f"{found.group(1)}/api/cost", params={"by": "namespace"}, timeout=30)
        assert response.status_code == 200
        assert sorted(r["namespace"] for r in response.json()) == ["platform", "team-data", "team-search",
                                                                     "team-support"]  # fmt: skip
    finally:
        server.terminate()
        server.wait(timeout=30)
