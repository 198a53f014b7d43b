"""The decode pool: real worker processes decode exactly as the receiver process would, survive a killed
worker, and leave no process behind."""

from __future__ import annotations

import os
import signal
import time

import psutil
import pyarrow as pa
import pytest
from conftest import CORPUS
from receiver_process import ReceiverProcess

from collector_ext.decode.batch import decode_request
from collector_ext.decode.limits import DEFAULT_LIMITS
from collector_ext.decode.pool import DecodePool, default_processes, usable_cpus

RECEIVED = 1_800_000_000_000_000_000


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.fixture
def pool():
    pool = DecodePool(2)
    yield pool
    pool.close()


def test_workers_decode_every_corpus_request_as_the_receiver_process_does(pool: DecodePool) -> None:
    assert len(pool.pids) == 2 and os.getpid() not in pool.pids
    for path in sorted(CORPUS.glob("*.pb")):
        payload = path.read_bytes()
        remote = pool.decode(payload, RECEIVED)
        local = decode_request(payload, RECEIVED)
        assert (remote.rejected, remote.errors, remote.malformed) == (local.rejected, local.errors, local.malformed)
        assert remote.table.equals(local.table)


def test_a_malformed_request_comes_back_as_malformed(pool: DecodePool) -> None:
    decoded = pool.decode(b"\xff\xff\xff", RECEIVED)
    assert decoded.table is None
    assert decoded.malformed.startswith("request is not a valid ExportTraceServiceRequest")


def test_a_killed_worker_is_replaced_and_the_request_still_decoded(pool: DecodePool) -> None:
    payload = sorted(CORPUS.glob("*.pb"))[0].read_bytes()
    expected = decode_request(payload, RECEIVED).table
    before = pool.pids
    os.kill(before[0], signal.SIGKILL)  # the worker the next request goes to (idle workers queue in order)
    deadline = time.monotonic() + 10
    while _alive(before[0]):
        assert time.monotonic() < deadline, "the killed worker did not exit"
        time.sleep(0.01)
    decoded = pool.decode(payload, RECEIVED)
    assert decoded.table.equals(expected)
    after = pool.pids
    assert len(after) == 2 and before[0] not in after and before[1] in after
    assert all(_alive(pid) for pid in after)


def test_a_request_that_kills_every_worker_is_answered_malformed(pool: DecodePool, monkeypatch) -> None:
    # the receiver's side of a worker that dies on the request: its answer pipe ends
    from collector_ext.decode import pool as decode_pool

    def dies(self, payload: bytes, received_time_ns: int, encoding):
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.join(10)
        raise decode_pool._WorkerDied("killed")

    monkeypatch.setattr(decode_pool._Worker, "decode", dies)
    before = pool.pids
    decoded = pool.decode(b"", RECEIVED)
    assert decoded.table is None
    assert decoded.malformed == "the request could not be decoded: a decode process died on it twice"
    assert not set(pool.pids) & set(before) and all(_alive(pid) for pid in pool.pids)


def test_close_stops_every_worker_and_later_decodes_run_in_process() -> None:
    pool = DecodePool(2)
    pids = pool.pids
    pool.close()
    assert not any(_alive(pid) for pid in pids)
    assert pool.pids == []
    assert pool.decode(b"", RECEIVED).total == 0  # an empty request is valid: nothing in it


def test_no_processes_decodes_in_the_receiver_process() -> None:
    pool = DecodePool(0)
    assert pool.pids == []
    payload = next(iter(sorted(CORPUS.glob("*.pb")))).read_bytes()
    assert pool.decode(payload, RECEIVED).table.equals(decode_request(payload, RECEIVED).table)
    pool.close()


def _descendants(pid: int) -> list[psutil.Process]:
    return psutil.Process(pid).children(recursive=True)


@pytest.mark.parametrize("ending", ["SIGTERM", "SIGKILL"])
def test_the_receivers_decode_processes_end_with_it(data_dir, ending: str) -> None:
    receiver = ReceiverProcess(data_dir, "--decode-processes", "2").start()
    try:
        children = _descendants(receiver.pid)
        workers = [child for child in children if child.ppid() != receiver.pid]  # the forkserver's children
        assert len(workers) == 2
    finally:
        receiver.stop() if ending == "SIGTERM" else receiver.kill()
    gone, alive = psutil.wait_procs(children, timeout=10)
    assert alive == [], f"left running after {ending}: {[p.pid for p in alive]}"


@pytest.mark.parametrize(
    ("cpu_max", "expected"),
    [("max 100000\n", None), ("200000 100000\n", 2), ("150000 100000\n", 2), ("50000 100000\n", 1), ("garbage", None)],
)
def test_usable_cpus_follow_a_container_cpu_limit(tmp_path, cpu_max: str, expected: int | None) -> None:
    cpu_max_file = tmp_path / "cpu.max"
    cpu_max_file.write_text(cpu_max)
    affinity = len(os.sched_getaffinity(0))
    assert usable_cpus(cpu_max_file) == (affinity if expected is None else min(affinity, expected))
    assert usable_cpus(tmp_path / "absent") == affinity
    if usable_cpus(cpu_max_file) == 1:
        assert default_processes(cpu_max_file) == 0  # one CPU: decode in the receiver process
    else:
        assert default_processes(cpu_max_file) == min(usable_cpus(cpu_max_file), 4)


def test_a_worker_answers_a_failing_decode_as_internal_and_serves_on(monkeypatch) -> None:
    # the worker's own loop, on real pipes, with a decoder that has a bug for one request
    import pickle
    import threading
    from multiprocessing import Pipe
    from types import SimpleNamespace

    from collector_ext.decode import pool as decode_pool

    def buggy(payload, received_time_ns, limits, encoding):
        if payload == b"bug":
            raise KeyError("oops")
        return decode_request(payload, received_time_ns, limits, encoding)

    monkeypatch.setattr(decode_pool, "decode_request", buggy)
    # a thread of this process: leave its signal handlers and collector settings alone
    monkeypatch.setattr(decode_pool.signal, "signal", lambda *args: None)
    monkeypatch.setattr(decode_pool, "gc", SimpleNamespace(collect=int, freeze=lambda: None, set_threshold=max))
    requests_read, requests = Pipe(duplex=False)
    answers, answers_write = Pipe(duplex=False)
    worker = threading.Thread(
        target=decode_pool._serve, args=(requests_read, answers_write, DEFAULT_LIMITS), daemon=True
    )
    worker.start()
    assert answers.recv_bytes() == b"ready"
    payload = sorted(CORPUS.glob("*.pb"))[0].read_bytes()
    for sent, expected_error in ((b"bug", "KeyError: 'oops'"), (payload, None)):
        requests.send_bytes(RECEIVED.to_bytes(8, "little") + bytes([0]))  # received time, protobuf
        requests.send_bytes(sent)
        decoded, has_table = pickle.loads(answers.recv_bytes())
        assert decoded.internal_error == expected_error
        assert has_table is (expected_error is None)
    assert pa.ipc.open_stream(answers.recv_bytes()).read_all().equals(decode_request(payload, RECEIVED).table)
    requests.close()  # the worker reads EOF and returns
    worker.join(10)
    assert not worker.is_alive()


def test_the_forkserver_preloads_the_decoder_that_exists() -> None:
    """The workers share the decoder's pages with their forkserver only if it preloads a real module
    (multiprocessing skips a preload that does not import, silently)."""
    import importlib.util

    from collector_ext.decode import pool

    assert pool._PRELOAD == ["collector_ext.decode.batch"]
    assert all(importlib.util.find_spec(name) is not None for name in pool._PRELOAD)
