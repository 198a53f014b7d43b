"""The addresses the receiver really listens on, once every endpoint is up (`--ready-file`, the ready log line).

An endpoint given with port 0 (`--grpc-endpoint 127.0.0.1:0`) gets a free port from the kernel at bind time,
so nothing else can take it between choosing and binding it: the way to run a receiver beside others on one
machine (tests, a demo, benchmarks). What was bound is then said twice: in the `receiver ready` log line, and
in the ready file, a small JSON document written whole (temporary name, then renamed) after every endpoint
listens and removed at a clean stop:

    {"pid": 4242, "grpc": "127.0.0.1:40121", "http": "127.0.0.1:40122", "scaler": "127.0.0.1:40123"}

`scaler` is null when the KEDA scaler is off. A process starting the receiver waits for the file, checks
`pid` is its child (a file left by a receiver killed earlier names another pid), and connects to the ports
it names.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from collector_ext.config import parse_endpoint


@dataclass(frozen=True)
class BoundEndpoints:
    pid: int
    grpc: str
    http: str
    scaler: str | None


def bound_address(configured: str, port: int) -> str:
    """The configured HOST:PORT with the port actually bound (the same unless it was 0)."""
    host, _ = parse_endpoint(configured)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def write_ready_file(path: Path, endpoints: BoundEndpoints) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{endpoints.pid}.tmp")
    temporary.write_text(json.dumps(asdict(endpoints)) + "\n")
    temporary.replace(path)  # a reader sees the whole document or none


def read_ready_file(path: Path) -> BoundEndpoints | None:
    """The endpoints a ready file names; None while there is none (written whole, so never half of one)."""
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    return BoundEndpoints(**document)


def remove_ready_file(path: Path, pid: int | None = None) -> None:
    """Remove the ready file if it is this process's (a clean stop: the endpoints are gone)."""
    found = read_ready_file(path)
    if found is not None and found.pid == (pid if pid is not None else os.getpid()):
        path.unlink(missing_ok=True)
