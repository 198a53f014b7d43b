"""Shared fixtures: loopback ports and temporary datasets."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

# The real-instrumentation span corpus, in the `shared/` folder beside the checkout (see its README).
CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "dataset"
    path.mkdir()
    return path
