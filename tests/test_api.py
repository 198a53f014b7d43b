"""The HTTP API (FastAPI TestClient over httpx): /api/cost, /api/tasks, /report."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from analyzer.api import create_app
from analyzer.cli import main
from analyzer.synthetic import generate
from tests.conftest import free_port


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("api")
    generate(root, tasks=80, seed=9)
    return root


@pytest.fixture(scope="module")
def client(dataset: Path) -> TestClient:
    return TestClient(create_app(dataset))


def test_cost_equals_the_cli_json(client: TestClient, dataset: Path, capsys) -> None:
    response = client.get("/api/cost", params={"by": ["agent", "day"], "since": "2026-11-03", "top": 5})
    assert response.status_code == 200
    assert main(["cost", "--data", str(dataset), "--by", "agent", "--by", "day", "--since", "2026-11-03",
                 "--top", "5", "--format", "json"]) == 0  # fmt: skip
    assert response.json() == json.loads(capsys.readouterr().out)
    assert len(response.json()) == 5 and all(r["day"] >= "2026-11-03" for r in response.json())


def test_cost_where_and_inclusive(client: TestClient) -> None:
    direct = client.get("/api/cost", params={"by": "task"}).json()
    inclusive = client.get("/api/cost", params={"by": "task", "inclusive": "true"}).json()
    assert len(direct) == len(inclusive) == 80
    assert sum(r["llm_calls"] for r in inclusive) > sum(r["llm_calls"] for r in direct)
    only = client.get("/api/cost", params={"by": "namespace", "where": "namespace=platform"}).json()
    assert [r["namespace"] for r in only] == ["platform"]


@pytest.mark.parametrize(
    ("params", "detail"),
    [
        ({"by": "colour"}, "unknown --by key 'colour'"),
        ({"by": "agent", "since": "someday"}, "bad time 'someday'"),
        ({"by": "agent", "where": "agent"}, "bad --where 'agent'"),
    ],
)
def test_user_errors_are_400(client: TestClient, params, detail) -> None:
    response = client.get("/api/cost", params=params)
    assert response.status_code == 400 and response.json()["detail"].startswith(detail)


def test_missing_dataset_is_400(tmp_path: Path) -> None:
    response = TestClient(create_app(tmp_path / "gone")).get("/api/cost", params={"by": "agent"})
    assert response.status_code == 400 and response.json()["detail"].startswith("no dataset at")


def test_tasks_and_report(client: TestClient) -> None:
    tasks = client.get("/api/tasks")
    assert tasks.status_code == 200
    task_ids = {t["task_id"] for t in tasks.json()}
    costed = {r["task"] for r in client.get("/api/cost", params={"by": "task"}).json()}
    assert task_ids == costed and len(task_ids) == 80
    page = client.get("/report")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "<h2>Cost by model</h2>" in page.text


def test_analyze_serve_answers_on_loopback(dataset: Path) -> None:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "analyzer.cli", "serve", "--data", str(dataset), "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/api/cost", params={"by": "namespace"}, timeout=10)
                break
            except httpx.TransportError:
                assert server.poll() is None and time.monotonic() < deadline, "analyze serve did not start"
                time.sleep(0.2)
        assert response.status_code == 200
        assert sorted(r["namespace"] for r in response.json()) == [
            "platform",
            "team-data",
            "team-search",
            "team-support",
        ]
    finally:
        server.terminate()
        server.wait(timeout=10)
