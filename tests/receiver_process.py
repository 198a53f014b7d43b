"""A real `collector-ext serve` subprocess for end-to-end tests.

    with ReceiverProcess(data_dir, "--keep", "all") as receiver:
        exporter = OTLPSpanExporter(endpoint=receiver.grpc_endpoint, insecure=True)
        ...
    # leaving the block sends SIGTERM and asserts a clean exit (0): every held span is in Parquet

The receiver listens on loopback ports the kernel chooses when it binds them (gRPC, HTTP and KEDA scaler
endpoints given as 127.0.0.1:0) and says which in its `--ready-file` (collector_ext/ready_file.py), which
`start()` waits for: no port is chosen here and released before the receiver binds it, so another process
(another test, another engineer's run) cannot take it in between, and the ports used are the ones the
receiver we started reports (its pid in the file). It uses the fixed writer id "test" unless told otherwise
(None: none given, so env/YAML apply) (so a restart on the same data dir replays the same WAL), and small
timings so that traces are written quickly. `kill()` is SIGKILL (crash tests); `stop()` is SIGTERM +
bounded wait; `start()` again after either restarts the receiver on the same ports (clients keep their
endpoints), data dir and writer id; should another process have bound one of them meanwhile, start() says
so.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from collector_ext.ready_file import BoundEndpoints, read_ready_file

# Small timings for tests; any of them can be overridden by passing the flag again in `extra_args`.
TEST_DEFAULTS = {
    "--trace-grace-seconds": "0.2",
    "--trace-max-wait-seconds": "30",
    "--parquet-max-seconds": "0.5",
    "--podresources-interval-seconds": "0",
    "--min-free-disk-mib": "16",
    "--retry-after-seconds": "1",
    "--log-format": "json",
    # the fixed-date test data (corpus captures, stitching scenarios, hand-built spans of 2023) is older than
    # the default window; the window itself is tested in test_receiver_limits.py
    "--span-max-age-hours": "0",
    "--span-max-future-minutes": "0",
}
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 60.0
# glibc: keep protobuf arenas mapped (DESIGN.md "Measured limits")
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "16777216", "MALLOC_TRIM_THRESHOLD_": "67108864"}
ENDPOINT_FLAGS = ("--grpc-endpoint", "--http-endpoint", "--scaler-endpoint")
_instances = itertools.count()


class ReceiverProcess:
    def __init__(
        self,
        data_dir: Path,
        *extra_args: str,
        writer_id: str | None = "test",
        env: dict[str, str] | None = None,
        log_path: Path | None = None,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        # with --tls-cert the HTTP endpoint speaks https: pass the client context that trusts it
        self.tls_context = tls_context
        flags = {
            "--data-dir": str(self.data_dir),
            **{flag: "127.0.0.1:0" for flag in ENDPOINT_FLAGS},
            **({"--writer-id": writer_id} if writer_id else {}),
            **TEST_DEFAULTS,
        }
        given = set(extra_args)
        self._own_endpoint_flags = [flag for flag in ENDPOINT_FLAGS if flag not in given]
        args = [a for key, value in flags.items() if key not in given for a in (key, value)]
        self.args = [sys.executable, "-m", "collector_ext.cli", "serve", *args, *extra_args]
        self.env = {**os.environ, **MALLOC_ENV, **(env or {})}
        instance = f"{writer_id}-{os.getpid()}-{next(_instances)}"
        self.log_path = log_path or self.data_dir.parent / f"receiver-{instance}.log"
        self.ready_path = self.log_path.parent / f"receiver-{instance}.ready.json"
        self.bound: BoundEndpoints | None = None  # from the ready file: kept for restarts
        self.process: subprocess.Popen | None = None
        self.returncode: int | None = None

    # -- where it listens (known once started) ---------------------------------------------------------
    def _endpoints(self) -> BoundEndpoints:
        assert self.bound is not None, "receiver not started: its ports are known once it listens"
        return self.bound

    @property
    def grpc_endpoint(self) -> str:
        return self._endpoints().grpc

    @property
    def grpc_port(self) -> int:
        return int(self.grpc_endpoint.rsplit(":", 1)[1])

    @property
    def http_url(self) -> str:
        return f"{'https' if self.tls_context else 'http'}://{self._endpoints().http}"

    @property
    def http_port(self) -> int:
        return int(self._endpoints().http.rsplit(":", 1)[1])

    @property
    def scaler_endpoint(self) -> str:
        scaler = self._endpoints().scaler
        assert scaler is not None, "the KEDA scaler is off"
        return scaler

    def _start_args(self) -> list[str]:
        """The command line; on a restart, the endpoints this helper chose are the ports bound before."""
        args = [*self.args, "--ready-file", str(self.ready_path)]
        if self.bound is not None:
            bound = dict(zip(ENDPOINT_FLAGS, (self.bound.grpc, self.bound.http, self.bound.scaler), strict=True))
            for flag in self._own_endpoint_flags:
                args[args.index(flag) + 1] = bound[flag] or ""
        return args

    # -- lifecycle -----------------------------------------------------------------------------------
    def start(self) -> ReceiverProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.ready_path.unlink(missing_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 (closed in _reap)
        repo = Path(__file__).resolve().parent.parent
        self.process = subprocess.Popen(
            self._start_args(), stdout=self._log, stderr=subprocess.STDOUT, env=self.env, cwd=repo
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self._reap()
                restarted = " (restarted on the ports it had: another process took one?)" if self.bound else ""
                raise RuntimeError(f"receiver exited with {self.returncode} at start{restarted}:\n{self.log()}")
            ready = read_ready_file(self.ready_path)
            if ready is not None and ready.pid == self.process.pid:  # ours, not a file left by an earlier one
                self.bound = ready
                return self
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"receiver wrote no ready file within {START_TIMEOUT_S} s:\n{self.log()}")

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.http_url}/healthz", timeout=1, context=self.tls_context) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    @property
    def pid(self) -> int:
        assert self.process is not None, "receiver not started"
        return self.process.pid

    def stop(self, check: bool = True) -> int:
        """SIGTERM, wait (bounded) for the receiver to write out everything; assert exit code 0."""
        if self.process is None:
            return self.returncode or 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
                self._reap()
                raise AssertionError(f"receiver did not stop within {STOP_TIMEOUT_S} s:\n{self.log()}") from None
        self._reap()
        if check:
            assert self.returncode == 0, f"receiver exited with {self.returncode}:\n{self.log()}"
        return self.returncode  # type: ignore[return-value]

    def kill(self) -> None:
        """SIGKILL: a crash, nothing written out."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self._reap()

    def _reap(self) -> None:
        if self.process is not None:
            self.returncode = self.process.returncode
            self.process = None
            self._log.close()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-20000:]
        except OSError:
            return ""

    def metrics_text(self) -> str:
        with urllib.request.urlopen(f"{self.http_url}/metrics", timeout=5, context=self.tls_context) as response:
            return response.read().decode()

    def __enter__(self) -> ReceiverProcess:
        return self.start()

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.stop()
        else:  # the test already failed: clean up without masking its error
            with contextlib.suppress(AssertionError):
                self.stop(check=False)
