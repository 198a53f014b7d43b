"""Shared fixtures: loopback ports, temporary datasets, and the demo's dataset (made once per session)."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from collector_ext.config import free_loopback_port as free_port  # noqa: F401 (tests import it from here)

# Real spans captured from real instrumentation libraries, with their exact usage (see corpus/README.md).
CORPUS = Path(__file__).resolve().parent / "corpus"


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "dataset"
    path.mkdir()
    return path


@pytest.fixture(autouse=True)
def analyzer_cache(tmp_path_factory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The analyzer's cache (analyzer/span_copies.py) per test, never the user's ~/.cache."""
    path = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("AGENTMETER_CACHE_DIR", str(path))
    return path


@dataclass(frozen=True)
class DemoRun:
    data_dir: Path
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    """`make demo` as a user runs it (a real receiver, fake kubelet, the loadgen workload through the OTel SDK,
    GPU metrics, the analyzer), with a short workload; run once, read by every test that needs its dataset."""
    data_dir = tmp_path_factory.mktemp("demo") / "demo-data"
    done = subprocess.run(
        [sys.executable, "-m", "collector_ext.demo", "--data-dir", str(data_dir), "--tasks", "8", "--seed", "3"],
        cwd=Path(__file__).resolve().parent.parent,
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "COLUMNS": "250"},
    )
    return DemoRun(data_dir, done.returncode, done.stdout, done.stderr)
