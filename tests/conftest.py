"""Shared fixtures: loopback ports and temporary datasets."""

from __future__ import annotations

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
