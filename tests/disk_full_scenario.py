"""A receiver on a real full disk, then killed: run inside a mount namespace with a small tmpfs at DIR.

    unshare --user --map-root-user --mount sh -c 'mount -t tmpfs -o size=8m tmpfs "$0" && exec "$@"' \\
        DIR python tests/disk_full_scenario.py DIR RESULT.json

(test_disk_full.py does this.) A ballast file leaves ~2 MiB free; a client streams requests of 200 spans
(each with an attribute that does not compress) until the disk is full and the receiver has refused 10 of
them (UNAVAILABLE: the WAL and the Parquet files compete for the last bytes; the kernel cuts writes short
and then fails them with ENOSPC). The receiver is SIGKILLed, the ballast removed, the receiver restarted
(it replays its WAL), sent a few more requests and stopped with SIGTERM. RESULT.json says what was
acknowledged, refused and written (every span row, by id), so the test can hold acknowledged = written once.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import duckdb
import grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

sys.path.insert(0, str(Path(__file__).resolve().parent))
from receiver_process import ReceiverProcess  # noqa: E402

EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
SPANS_PER_REQUEST = 200
MAX_REQUESTS = 600  # ~25 MB of spans through ~2 MiB of free disk: it fills long before
REFUSALS_BEFORE_KILL = 10
FREE_BYTES = 2 << 20


def request(request_no: int) -> tuple[bytes, list[str]]:
    """Whole agent traces (a root and a chat span each) with a 256-byte attribute that does not compress."""
    spans, ids = [], []
    now = time.time_ns()
    for n in range(SPANS_PER_REQUEST // 2):
        trace = (request_no * 1000 + n + 1).to_bytes(16, "big")
        root, chat = (
            (2 * (request_no * 1000 + n) + 1).to_bytes(8, "big"),
            (2 * (request_no * 1000 + n) + 2).to_bytes(8, "big"),
        )
        noise = os.urandom(128).hex()
        for span_id, parent, name, operation in (
            (chat, root, "chat", "chat"),
            (root, b"", "invoke_agent a", "invoke_agent"),
        ):
            spans.append(
                Span(
                    trace_id=trace,
                    span_id=span_id,
                    parent_span_id=parent,
                    name=name,
                    start_time_unix_nano=now,
                    end_time_unix_nano=now + 1000,
                    attributes=[
                        KeyValue(key="gen_ai.operation.name", value=AnyValue(string_value=operation)),
                        KeyValue(key="app.noise", value=AnyValue(string_value=noise)),
                    ],
                )
            )
            ids.append(f"{trace.hex()}:{span_id.hex()}")
    body = ExportTraceServiceRequest(resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=spans)])])
    return body.SerializeToString(), ids


def main(mount: Path, result_path: Path) -> None:
    ballast = mount / "ballast"
    free = os.statvfs(mount).f_bavail * os.statvfs(mount).f_frsize
    with open(ballast, "wb") as handle:
        handle.write(b"\0" * (free - FREE_BYTES))
    data = mount / "data"
    log = result_path.parent / "receiver.log"  # outside the small disk
    flags = ("--min-free-disk-mib", "0", "--wal-segment-mib", "1", "--decode-processes", "0")
    acked: list[str] = []
    refused = errors = 0
    metrics = ""
    receiver = ReceiverProcess(data, *flags, log_path=log).start()
    try:
        with grpc.insecure_channel(receiver.grpc_endpoint) as channel:
            export = channel.unary_unary(EXPORT, response_deserializer=ExportTraceServiceResponse.FromString)
            for request_no in range(MAX_REQUESTS):
                payload, ids = request(request_no)
                try:
                    export(payload, timeout=10)
                except grpc.RpcError as err:
                    if err.code() != grpc.StatusCode.UNAVAILABLE:
                        errors += 1  # anything but the retryable answer is a failure of the test
                    refused += 1
                    if refused >= REFUSALS_BEFORE_KILL:
                        break
                    continue
                acked.extend(ids)
        metrics = receiver.metrics_text()
        receiver.kill()  # SIGKILL on a full disk
    finally:
        receiver.kill()
    ballast.unlink()  # space comes back
    with (
        ReceiverProcess(data, *flags, log_path=log) as restarted,
        grpc.insecure_channel(restarted.grpc_endpoint) as channel,
    ):
        export = channel.unary_unary(EXPORT, response_deserializer=ExportTraceServiceResponse.FromString)
        for request_no in range(MAX_REQUESTS, MAX_REQUESTS + 3):
            payload, ids = request(request_no)
            export(payload, timeout=10)
            acked.extend(ids)
    rows = (
        duckdb.connect()
        .sql(f"SELECT hex(trace_id), hex(span_id) FROM read_parquet('{data}/spans/*/*.parquet')")
        .fetchall()
    )
    result = {
        "acked": sorted(acked),
        "written": [f"{t.lower()}:{s.lower()}" for t, s in rows],
        "refused": refused,
        "other_errors": errors,
        "metrics_on_the_full_disk": metrics,
    }
    result_path.write_text(json.dumps(result))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
