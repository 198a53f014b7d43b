"""A real S3 API on loopback for tests: moto in server mode (`moto[server]` from PyPI), as a subprocess.

    with S3Server() as s3:                      # python -m moto.server -H 127.0.0.1 -p <free port>
        s3.create_bucket("data")
        env = s3.env                            # AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ... for a receiver
        s3.stop(); s3.start()                   # the bucket going away and coming back (same port)

moto keeps its state in memory (moto/server.py, moto/backends): a restarted server has no buckets; the
test creates the bucket again, as an operator restoring a bucket would. Stopped by its pid.

`HoldingProxy` sits between a client and the server (loopback TCP): with `hold()`, the server's answers
stop reaching the client while requests still go through, so a test can see an upload land in the bucket
while its writer still waits for the answer: the moment between the upload and what the writer does next.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pyarrow.fs as pafs
from conftest import free_port

START_TIMEOUT_S = 30.0
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1"}


class S3Server:
    def __init__(self, log_path: Path | None = None) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.process: subprocess.Popen | None = None

    @property
    def env(self) -> dict[str, str]:
        return {"AWS_ENDPOINT_URL": self.endpoint, **CREDENTIALS}

    def start(self) -> S3Server:
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **CREDENTIALS},
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self.process.poll() is None, "moto server exited at start"
            with (
                contextlib.suppress(urllib.error.URLError, OSError),
                urllib.request.urlopen(f"{self.endpoint}/moto-api/", timeout=1),
            ):
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("moto server did not answer")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(5)
        self.process = None

    def filesystem(self, endpoint: str | None = None) -> pafs.S3FileSystem:
        return pafs.S3FileSystem(
            access_key=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            secret_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            region=CREDENTIALS["AWS_REGION"],
            endpoint_override=endpoint or self.endpoint,
            allow_bucket_creation=True,
        )

    def create_bucket(self, name: str) -> None:
        self.filesystem().create_dir(name)

    def keys(self, prefix: str) -> list[str]:
        selector = pafs.FileSelector(prefix, recursive=True, allow_not_found=True)
        return sorted(i.path for i in self.filesystem().get_file_info(selector) if i.type == pafs.FileType.File)

    def __enter__(self) -> S3Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class HoldingProxy:
    """A loopback TCP proxy to `target_port`; `hold()` stops passing the server's bytes to the client."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._holding = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def hold(self) -> None:
        self._holding.set()

    def _accept(self) -> None:
        self._listener.settimeout(0.2)
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.target_port))
            threading.Thread(target=self._pipe, args=(client, server), daemon=True).start()

    def _pipe(self, client: socket.socket, server: socket.socket) -> None:
        with client, server:
            while not self._stop.is_set():
                ready, _, _ = select.select([client, server], [], [], 0.2)
                for sock in ready:
                    if sock is server and self._holding.is_set():
                        continue  # the answer is held back: the client keeps waiting
                    data = sock.recv(65536)
                    if not data:
                        return
                    (server if sock is client else client).sendall(data)
                if self._holding.is_set() and ready == [server]:
                    time.sleep(0.05)

    def close(self) -> None:
        self._stop.set()
        self._listener.close()
        self._thread.join(5)
