"""The dataset in object storage, against a real S3 API on loopback (moto's server mode, tests/s3_server.py).

- two receivers write one prefix under their writer ids; `analyze --data s3://...` answers exactly what it
  answers on a local copy of the bucket, and what the workload sent; a third receiver with a writer id in
  use refuses to start;
- a receiver killed (kill -9) after its upload reached the bucket and before it heard back (so before its
  WAL was retired) replays on restart, finds the file in the bucket, and writes nothing twice;
- the bucket going away (the server stopped) is back-pressure: requests are acknowledged into the WAL up to
  --max-pending-mib, then refused UNAVAILABLE with RetryInfo; once the bucket is back every acknowledged
  span is written, once;
- --wal-dir is required with an s3:// --data-dir (one line, exit 2).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import grpc
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
from receiver_process import ReceiverProcess
from s3_server import HoldingProxy, S3Server
from test_crash_recovery import EXPORT, agent_request
from test_receiver_overload import METRICS_EXPORT, assert_retryable, raw_call

from collector_ext.demo.loadgen import WorkloadSpec, make_exporter, run_workload

pytestmark = pytest.mark.slow
BUCKET = "agentmeter"
PREFIX = "prod/dataset"
LOCATION = f"s3://{BUCKET}/{PREFIX}"
WAIT_S = 90.0


@pytest.fixture
def s3(tmp_path):
    with S3Server(tmp_path / "moto.log") as server:
        server.create_bucket(BUCKET)
        yield server


def analyze(args: list[str], env: dict[str, str]) -> dict | list:
    done = subprocess.run(
        [sys.executable, "-m", "analyzer.cli", *args, "--format", "json"],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def spans_in_bucket(s3: S3Server) -> list[tuple[str, str]]:
    """(trace_id, span_id) of every span row under the prefix, duplicates kept (read straight from the server)."""
    fs = s3.filesystem()
    rows: list[tuple[str, str]] = []
    con = duckdb.connect()
    for key in s3.keys(f"{BUCKET}/{PREFIX}/spans"):
        with fs.open_input_file(key) as handle:
            table = pq.read_table(handle, columns=["trace_id", "span_id"])
        con.register("t", table)
        rows += con.execute("SELECT lower(hex(trace_id)), lower(hex(span_id)) FROM t").fetchall()
        con.unregister("t")
    return rows


def receiver(tmp_path: Path, s3_env: dict[str, str], writer_id: str, *extra: str) -> ReceiverProcess:
    return ReceiverProcess(
        tmp_path / "unused",  # --data-dir is given below
        "--data-dir",
        LOCATION,
        "--wal-dir",
        str(tmp_path / f"wal-{writer_id}"),
        *extra,
        writer_id=writer_id,
        env=s3_env,
        log_path=tmp_path / f"receiver-{writer_id}.log",
    )


def test_two_receivers_write_one_prefix_and_the_analyzer_answers_as_on_a_local_copy(s3, tmp_path):
    results = {}
    a, b = receiver(tmp_path, s3.env, "receiver-a"), receiver(tmp_path, s3.env, "receiver-b")
    with a, b:
        for seed, target in ((3, a), (4, b)):
            results[seed] = run_workload(
                WorkloadSpec(tasks=15, seed=seed), lambda t=target: make_exporter(t.grpc_endpoint)
            )
        # the writer id is a lease in the bucket: a second receiver under "receiver-a" does not start
        clash = subprocess.run(
            [sys.executable, "-m", "collector_ext.cli", "serve", "--data-dir", LOCATION, "--wal-dir",
             str(tmp_path / "wal-clash"), "--writer-id", "receiver-a", "--grpc-endpoint", "127.0.0.1:0",
             "--http-endpoint", "127.0.0.1:0", "--scaler-endpoint", ""],
            capture_output=True, text=True, env={**os.environ, **s3.env}, timeout=60,
        )  # fmt: skip
        assert clash.returncode == 2
        assert clash.stderr.startswith("error: writer id 'receiver-a' is in use on s3://agentmeter/prod/dataset")
    keys = s3.keys(f"{BUCKET}/{PREFIX}")
    span_files = [k.rsplit("/", 1)[1] for k in keys if "/spans/date=" in k]
    assert {name.rsplit("-", 1)[0] for name in span_files} == {"receiver-a", "receiver-b"}
    assert f"{BUCKET}/{PREFIX}/_schema.json" in keys
    assert not [k for k in keys if "/_locks/" in k]  # each lease given back at exit
    rows = spans_in_bucket(s3)
    assert len(rows) == len(set(rows)) == sum(r.spans_sent - r.noise_spans for r in results.values())

    # the analyzer over the bucket, with a HOME of its own: nothing downloaded but the dataset (no DuckDB
    # extension), and the same answers as over a plain local copy of the bucket made without the analyzer
    home, cache = tmp_path / "home", tmp_path / "cache"
    home.mkdir()
    env = {**s3.env, "HOME": str(home), "AGENTMETER_CACHE_DIR": str(cache)}
    copy = tmp_path / "copy"
    pafs.copy_files(f"{BUCKET}/{PREFIX}", str(copy), source_filesystem=s3.filesystem(),
                    destination_filesystem=pafs.LocalFileSystem())  # fmt: skip
    for args in (["cost", "--by", "agent"], ["cost", "--by", "task"], ["tasks", "--top", "100"], ["cost"]):
        remote = analyze([*args, "--data", LOCATION], env)
        assert remote == analyze([*args, "--data", str(copy)], env), args
    totals = analyze(["cost", "--data", LOCATION], env)
    sent = [r.total() for r in results.values()]
    assert totals[0]["llm_calls"] == sum(t.llm_calls for t in sent)
    assert totals[0]["input_tokens"] == sum(t.input_tokens for t in sent)
    assert totals[0]["output_tokens"] == sum(t.output_tokens for t in sent)
    assert not list(home.rglob("*"))  # no ~/.duckdb/extensions, nothing else
    assert sorted(p.name for p in (cache / "s3" / BUCKET / PREFIX / "spans").rglob("*.parquet")) == sorted(span_files)


def test_a_receiver_killed_between_its_upload_and_the_wal_retirement_writes_nothing_twice(s3, tmp_path):
    proxy = HoldingProxy(s3.port)
    try:
        first = receiver(tmp_path, {**s3.env, "AWS_ENDPOINT_URL": proxy.endpoint}, "w1", "--parquet-max-seconds", "3")
        acked: set[tuple[str, str]] = set()
        with first:
            for request_no in range(4):
                payload, ids = agent_request(request_no)
                assert raw_call(first.grpc_endpoint, EXPORT, payload) == b""
                acked |= ids
            proxy.hold()  # from now on the server's answers stay with the proxy: the upload lands, unanswered
            deadline = time.monotonic() + WAIT_S
            while not [k for k in s3.keys(f"{BUCKET}/{PREFIX}/spans")] and time.monotonic() < deadline:
                time.sleep(0.05)
            assert len(s3.keys(f"{BUCKET}/{PREFIX}/spans")) == 1  # in the bucket ...
            assert list((tmp_path / "wal-w1").glob("*.wal"))  # ... and still in the WAL: never retired
            first.kill()  # kill -9 while it waits for the answer
        assert sorted(set(spans_in_bucket(s3))) == sorted(acked)
        # restarted straight on the server: the replay finds the uploaded file and skips its spans
        with receiver(tmp_path, s3.env, "w1") as again:
            deadline = time.monotonic() + WAIT_S
            while list((tmp_path / "wal-w1").glob("*.wal")) and time.monotonic() < deadline:
                time.sleep(0.1)
        rows = spans_in_bucket(s3)
        assert len(rows) == len(set(rows)) and set(rows) == acked
        replay = [json.loads(line) for line in again.log().splitlines() if '"write-ahead log replayed"' in line]
        assert [(r["spans"], r["already_in_parquet"]) for r in replay] == [(0, len(acked))]  # none written again
    finally:
        proxy.close()


def export_until_refused(endpoint: str) -> tuple[set[tuple[str, str]], grpc.RpcError | None]:
    """Agent requests exported one by one until the receiver refuses one: the (trace_id, span_id) of every span
    acknowledged before, and the refusal (None if none came within the bound)."""
    acked: set[tuple[str, str]] = set()
    for request_no in range(2000):  # bounded: the WAL limit is reached long before
        payload, ids = agent_request(request_no)
        answer = raw_call(endpoint, EXPORT, payload)
        if isinstance(answer, grpc.RpcError):
            return acked, answer
        acked |= ids
    return acked, None


def bucket_back_and_holding(s3: S3Server, spans: int) -> None:
    """The bucket is back (a restarted moto server is empty: the operator restores the bucket); wait until it
    holds `spans` distinct spans (the receiver's WAL written out), or WAIT_S."""
    s3.start()
    s3.create_bucket(BUCKET)
    deadline = time.monotonic() + WAIT_S
    while len(set(spans_in_bucket(s3))) < spans and time.monotonic() < deadline:
        time.sleep(0.5)


def test_the_bucket_going_away_is_back_pressure_and_every_acknowledged_span_arrives_once(s3, tmp_path):
    with receiver(tmp_path, s3.env, "w1", "--max-pending-mib", "1", "--parquet-max-seconds", "0.2") as running:
        s3.stop()  # the bucket is gone: uploads fail, rows stay in the WAL
        acked, refused = export_until_refused(running.grpc_endpoint)
        assert refused is not None, "never refused: the WAL limit was not enforced"
        assert_retryable(refused, 1)  # UNAVAILABLE + RetryInfo (--retry-after-seconds 1 in the tests)
        assert acked  # acknowledged while the bucket was away: kept in the WAL
        bucket_back_and_holding(s3, len(acked))
        payload, ids = agent_request(5000)
        assert raw_call(running.grpc_endpoint, EXPORT, payload) == b""  # accepting again
        acked |= ids
    rows = spans_in_bucket(s3)
    assert len(rows) == len(set(rows)), "a span was written twice"
    assert set(rows) == acked


def log_events(receiver_process: ReceiverProcess, event: str) -> list[dict]:
    return [json.loads(line) for line in receiver_process.log().splitlines() if f'"event": "{event}' in line]


def test_a_bucket_unreachable_at_start_is_retried_and_what_was_accepted_meanwhile_arrives_once(s3, tmp_path):
    """moto's server is down when the receiver starts: it starts anyway, acknowledges traces into its WAL up to
    --max-pending-mib, then refuses them retryably, as GPU metrics until the bucket answers; it retries the
    bucket with back-off, and once it is back every acknowledged span is written, once."""
    s3.stop()
    with receiver(tmp_path, s3.env, "w1", "--max-pending-mib", "1", "--parquet-max-seconds", "0.2") as running:
        acked, refused = export_until_refused(running.grpc_endpoint)
        assert acked, "nothing acknowledged while the bucket was unreachable"
        assert refused is not None, "never refused: the WAL limit was not enforced"
        assert_retryable(refused, 1)  # UNAVAILABLE + RetryInfo (--retry-after-seconds 1 in the tests)
        gpu_answer = raw_call(running.grpc_endpoint, METRICS_EXPORT, b"")
        assert isinstance(gpu_answer, grpc.RpcError)
        assert_retryable(gpu_answer, 1)
        bucket_back_and_holding(s3, len(acked))
        payload, ids = agent_request(5000)
        assert raw_call(running.grpc_endpoint, EXPORT, payload) == b""  # accepting again, as usual
        acked |= ids
        assert raw_call(running.grpc_endpoint, METRICS_EXPORT, b"") == b""  # GPU metrics too
    rows = spans_in_bucket(s3)
    assert len(rows) == len(set(rows)), "a span was written twice"
    assert set(rows) == acked
    (unreachable,) = log_events(running, "object store unreachable at start")
    assert "Connection reset by peer" in unreachable["error"]
    (reached,) = log_events(running, "object store reached")
    assert reached["replayed_spans"] == len(acked) - len(ids)  # what waited in the WAL, replayed once


def test_a_writer_id_found_in_use_once_the_bucket_answers_stops_the_receiver_and_keeps_its_wal(s3, tmp_path):
    gate = HoldingProxy(None)  # this receiver's way to the bucket: nothing behind it yet
    try:
        with receiver(tmp_path, s3.env, "w1"):  # holds writer id w1's lease
            second = ReceiverProcess(
                tmp_path / "unused",
                "--data-dir", LOCATION, "--wal-dir", str(tmp_path / "wal-second"),
                writer_id="w1", env={**s3.env, "AWS_ENDPOINT_URL": gate.endpoint},
                log_path=tmp_path / "receiver-second.log",
            ).start()  # fmt: skip
            try:
                payload, _ = agent_request(1)
                assert raw_call(second.grpc_endpoint, EXPORT, payload) == b""  # into its WAL
                gate.target_port = s3.front.target_port  # the bucket answers: the lease is found held
                assert second.process is not None
                assert second.process.wait(WAIT_S) == 2
            finally:
                second.kill()
    finally:
        gate.close()
    errors = [line for line in second.log().splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, second.log()
    assert errors[0].startswith(f"error: writer id 'w1' is in use on {LOCATION}: another process (pid ")
    assert errors[0].endswith("; give every receiver its own --writer-id")
    assert list((tmp_path / "wal-second").glob("*.wal")), "the acknowledged request left the WAL"
    assert not [k for k in s3.keys(f"{BUCKET}/{PREFIX}/spans") if "/w1-" in k]  # nothing written by either


def test_an_object_store_data_dir_needs_a_local_wal_dir(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "collector_ext.cli", "serve", "--data-dir", LOCATION],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"error: Invalid value: --wal-dir is required with --data-dir {LOCATION}: the write-ahead log must be "
        "on local disk"
    ]
