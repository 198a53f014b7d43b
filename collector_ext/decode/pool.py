"""Decode processes: export requests decoded in parallel, outside the receiver process's GIL.

One Python process decodes ~50 k spans/s (bench/bench_ingest.py); the receiver's other work (gRPC, WAL,
trace buffer, stitching, Parquet) needs a fraction of that again. `--decode-processes N` runs the decoding
(`decode/batch.py: decode_request`) in N worker processes, so a 2-core sidecar uses both cores. With 0 the
receiver decodes in its own process (one core, fewest processes: tiny pods).

Each worker has two pipes of its own: request bytes go in as they came (no pickling, no helper threads:
the calling gRPC thread writes and reads, releasing the GIL while it waits), after a 9-byte header (received
time, encoding); the answer comes back as a small pickled header and the accepted spans as one Arrow IPC
stream, which the receiver reads without copying. A thread takes an idle worker from a queue, so at most N
requests decode at once and the others wait their turn (bounded by the transports' concurrency limits).
Workers get the decode limits (`DecodeLimits`, from the configuration) when they start.

Memory is bounded by configuration: OTLP/JSON costs ~6x its size to parse (decode/otlp_json.py), so one
JSON request is decoded at a time, whichever worker takes it; without workers at most two requests decode
in the receiver process at once (one CPU: more would only share it).

Workers are stateless, and nothing is acknowledged before the receiver has written the request to its WAL,
so a dying worker loses nothing: it is replaced and the request tried once more; a request that kills two
workers is answered as malformed (not retried by clients, which would otherwise kill workers forever).
Workers are started by a forkserver (never a fork of the threaded receiver) that preloads the decoder.
They ignore SIGINT (a terminal's Ctrl-C reaches the whole process group; the receiver decides when to
stop), and exit when their request pipe closes: when the receiver stops them, or dies, even by kill -9.
"""

from __future__ import annotations

import contextlib
import fcntl
import gc
import math
import multiprocessing
import os
import pickle
import queue
import signal
import threading
from multiprocessing.connection import Connection
from pathlib import Path

import pyarrow as pa

from collector_ext.decode.batch import DecodedBatch, Encoding, decode_request
from collector_ext.decode.limits import DEFAULT_LIMITS, DecodeLimits
from collector_ext.errors import ErrorKind, ReceiverError

GC_GEN0_THRESHOLD = 10_000
CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")
MAX_DEFAULT_PROCESSES = 4
START_TIMEOUT_S = 60.0
DECODE_TIMEOUT_S = 120.0  # a decode never takes this long; past it the worker is taken for hung
STOP_TIMEOUT_S = 5.0
RETRY_WHILE_STOPPING_S = 1.0
PIPE_BYTES = 1 << 20  # a whole request or answer fits: one write, not a ping-pong of 64 KiB pieces
_PRELOAD = ["collector_ext.decode.batch"]  # the decoder: imported once, its pages shared by the workers
_READY = b"ready"
_ENCODINGS = tuple(Encoding)  # the header's encoding byte is an index into this
LOCAL_DECODES = 2  # requests decoded at once in the receiver process when there are no workers


def usable_cpus(cgroup_cpu_max: Path = CGROUP_CPU_MAX) -> int:
    """The CPUs this process may use: its CPU affinity, lowered to its cgroup's CPU quota when one is set (a
    container's CPU limit, cgroup v2 `cpu.max`), rounded up."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    try:
        quota, period = cgroup_cpu_max.read_text().split()[:2]
        if quota != "max":
            cpus = min(cpus, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):  # no cgroup v2, or not readable: the affinity alone
        pass
    return cpus


def default_processes(cgroup_cpu_max: Path = CGROUP_CPU_MAX) -> int:
    """One decode process per usable CPU (at most 4), none on a single CPU."""
    cpus = usable_cpus(cgroup_cpu_max)
    return 0 if cpus <= 1 else min(cpus, MAX_DEFAULT_PROCESSES)


def _widen(connection: Connection) -> None:
    with contextlib.suppress(AttributeError, OSError):  # Linux only; the default size works, slower
        fcntl.fcntl(connection.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)


# -- the worker process -------------------------------------------------------------------------------------
def _serve(requests: Connection, answers: Connection, limits: DecodeLimits) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # decoding makes dicts by the hundred thousand, none cyclic: collect less often (as the receiver does)
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_GEN0_THRESHOLD, 20, 20)
    answers.send_bytes(_READY)
    while True:
        try:
            header = requests.recv_bytes()
            payload = requests.recv_bytes()
        except (EOFError, OSError):  # the receiver closed the pipe, or is gone
            return
        received_time_ns = int.from_bytes(header[:8], "little")
        encoding = _ENCODINGS[header[8]]
        try:
            decoded = decode_request(payload, received_time_ns, limits, encoding)
        except Exception as err:  # a bug in decoding: this request fails, the worker goes on
            decoded = DecodedBatch(internal_error=f"{type(err).__name__}: {err}")
        table, decoded.table = decoded.table, None
        answers.send_bytes(pickle.dumps((decoded, table is not None)))
        if table is not None:
            sink = pa.BufferOutputStream()
            with pa.ipc.new_stream(sink, table.schema) as writer:
                writer.write_table(table)
            answers.send_bytes(sink.getvalue())


# -- the receiver's side ------------------------------------------------------------------------------------
class _WorkerDied(Exception):
    pass


class _Worker:
    def __init__(self, context: multiprocessing.context.ForkServerContext, limits: DecodeLimits) -> None:
        requests_read, self.requests = context.Pipe(duplex=False)
        self.answers, answers_write = context.Pipe(duplex=False)
        self.process = context.Process(
            target=_serve, args=(requests_read, answers_write, limits), name="agentmeter-decode", daemon=True
        )
        self.process.start()
        requests_read.close()  # only the worker holds these ends: its death (or ours) closes the pipes
        answers_write.close()
        _widen(self.requests)
        _widen(self.answers)
        if not self.answers.poll(START_TIMEOUT_S) or self.answers.recv_bytes() != _READY:
            self.stop()
            raise RuntimeError("a decode process did not start")

    def decode(self, payload: bytes, received_time_ns: int, encoding: Encoding) -> DecodedBatch:
        try:
            header = received_time_ns.to_bytes(8, "little") + bytes([_ENCODINGS.index(encoding)])
            self.requests.send_bytes(header)
            self.requests.send_bytes(payload)  # as it came: no copy to prepend the header
            if not self.answers.poll(DECODE_TIMEOUT_S):
                raise _WorkerDied("no answer")
            decoded, has_table = pickle.loads(self.answers.recv_bytes())
            if has_table:
                decoded.table = pa.ipc.open_stream(self.answers.recv_bytes()).read_all()
        except (EOFError, OSError, pickle.UnpicklingError) as err:
            raise _WorkerDied(str(err)) from err
        return decoded

    def stop(self) -> None:
        for connection in (self.requests, self.answers):
            connection.close()  # the worker reads EOF and exits
        self.process.join(STOP_TIMEOUT_S)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(STOP_TIMEOUT_S)


class DecodePool:
    def __init__(self, processes: int, limits: DecodeLimits = DEFAULT_LIMITS) -> None:
        self._context = multiprocessing.get_context("forkserver")
        self._context.set_forkserver_preload(_PRELOAD)
        self.limits = limits
        self._lock = threading.Lock()
        self._json = threading.Lock()  # one OTLP/JSON request decodes at a time (see the module docstring)
        self._local = threading.BoundedSemaphore(LOCAL_DECODES)
        self._closed = False
        self._workers: list[_Worker] = [_Worker(self._context, limits) for _ in range(processes)]
        self._idle: queue.SimpleQueue[_Worker] = queue.SimpleQueue()
        for worker in self._workers:
            self._idle.put(worker)

    def json_slot(self) -> threading.Lock:
        """Held while an OTLP/JSON body is parsed in the receiver process (metrics): one at a time, as traces."""
        return self._json

    @property
    def pids(self) -> list[int]:
        """The decode processes' pids (for tests and benchmarks)."""
        with self._lock:
            return [pid for worker in self._workers if (pid := worker.process.pid) is not None]  # started: all

    def decode(self, payload: bytes, received_time_ns: int, encoding: Encoding = Encoding.PROTOBUF) -> DecodedBatch:
        """Decode one request (blocks the calling thread, not the GIL, while a worker decodes)."""
        if encoding is Encoding.JSON:
            with self._json:
                return self._decode(payload, received_time_ns, encoding)
        return self._decode(payload, received_time_ns, encoding)

    def _decode(self, payload: bytes, received_time_ns: int, encoding: Encoding) -> DecodedBatch:
        if not self._workers:
            with self._local:
                return decode_request(payload, received_time_ns, self.limits, encoding)
        for _attempt in range(2):
            taken = self._idle.get()
            worker: _Worker | None = taken  # what goes back to the idle queue: it, or its replacement
            try:
                decoded = taken.decode(payload, received_time_ns, encoding)
            except _WorkerDied:
                worker = self._replace(taken)
                if worker is None:
                    raise ReceiverError(ErrorKind.OVERLOADED, "receiver is stopping", RETRY_WHILE_STOPPING_S) from None
                continue
            finally:
                if worker is not None:
                    self._idle.put(worker)
            return decoded
        # not retryable: a request that kills the decoder would otherwise be sent again and again
        return DecodedBatch(malformed="the request could not be decoded: a decode process died on it twice")

    def _replace(self, dead: _Worker) -> _Worker | None:
        dead.stop()
        with self._lock:
            if self._closed:
                return None
            fresh = _Worker(self._context, self.limits)
            self._workers[self._workers.index(dead)] = fresh
            return fresh

    def close(self) -> None:
        """Stop every worker; later decodes run in the calling process."""
        with self._lock:
            self._closed = True
            workers, self._workers = self._workers, []
        for worker in workers:
            worker.stop()
