"""A real S3 API on loopback for tests: moto in server mode (`moto[server]` from PyPI), as a subprocess.

    with S3Server() as s3:                      # python -m moto.server -H 127.0.0.1 -p 0, behind a proxy
        s3.create_bucket("data")
        env = s3.env                            # AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ... for a receiver
        s3.stop(); s3.start()                   # the bucket going away and coming back (same endpoint)

Clients reach moto through a loopback TCP proxy whose port is bound for the S3Server's whole life: moto
itself binds port 0 (the kernel picks a free port as it binds; moto prints which: werkzeug's "Running on"
line), so no port is chosen and released before the server binds it, and the endpoint clients hold stays
the same across a stop and a start (a restarted moto gets a new port; the proxy follows it). While moto is
stopped, the proxy resets each connection at once, as a client sees an endpoint with nothing behind it.

moto keeps its state in memory (moto/server.py, moto/backends): a restarted server has no buckets; the
test creates the bucket again, as an operator restoring a bucket would. Stopped by its pid.

`HoldingProxy` sits between a client and the server (loopback TCP): with `hold()`, the server's answers
stop reaching the client while requests still go through, so a test can see an upload land in the bucket
while its writer still waits for the answer: the moment between the upload and what the writer does next.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import pyarrow.fs as pafs

START_TIMEOUT_S = 30.0
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1"}


# werkzeug's serving.py `log_startup`: " * Running on http://127.0.0.1:40377" (the port bound, also for -p 0)
RUNNING_ON = re.compile(rb"Running on http://127\.0\.0\.1:(\d+)")


class S3Server:
    def __init__(self, log_path: Path | None = None) -> None:
        self.front = HoldingProxy(None)  # the endpoint clients use, for the server's whole life
        self.port = self.front.port
        self.endpoint = self.front.endpoint
        self.log_path = log_path or Path(tempfile.mkdtemp(prefix="moto-")) / "moto.log"
        self.process: subprocess.Popen | None = None

    @property
    def env(self) -> dict[str, str]:
        return {"AWS_ENDPOINT_URL": self.endpoint, **CREDENTIALS}

    def start(self) -> S3Server:
        self.log_path.touch()
        offset = self.log_path.stat().st_size  # the log is appended to by every start: read this one's lines
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", "0"],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **CREDENTIALS},
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self.process.poll() is None, "moto server exited at start"
            with open(self.log_path, "rb") as log:
                log.seek(offset)
                found = RUNNING_ON.search(log.read())
            if found:
                port = int(found.group(1))  # bound by the process we started
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/moto-api/", timeout=10):
                    pass
                self.front.target_port = port
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("moto server did not say where it listens")

    def stop(self) -> None:
        self.front.target_port = None  # from now on connections are reset: nothing behind the endpoint
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
        self.front.close()


class HoldingProxy:
    """A loopback TCP proxy to `target_port` (None: nothing behind it, each connection is reset); `hold()`
    stops passing the server's bytes to the client. Its own port is bound for its whole life."""

    def __init__(self, target_port: int | None) -> None:
        self.target_port = target_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
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
            try:
                if self.target_port is None:
                    raise ConnectionRefusedError
                server = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                _reset(client)
                continue
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


def _reset(connection: socket.socket) -> None:
    """Close with RST (SO_LINGER on, 0 s), as a host answers a connection to a port nothing listens on."""
    with contextlib.suppress(OSError):
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    connection.close()
