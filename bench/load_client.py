"""A bounded OTLP/gRPC load client: sends pre-serialized ExportTraceServiceRequests, records acknowledgements.

    python -m bench.load_client --endpoint 127.0.0.1:4317 --requests FILE [--streams 4] [--gzip]
        [--max-requests N] [--max-seconds S]

FILE holds length-prefixed (4-byte little-endian) serialized requests. Each is sent at most once, by one of
`--streams` concurrent grpc.aio calls over one channel, raw bytes (no re-serialization in the client), until
every request is sent, `--max-requests` or `--max-seconds` is reached: the loop is bounded in count and time.
Prints one JSON line: requests sent / acknowledged / refused (by status code), spans acknowledged, seconds
from the first send to the last answer, spans/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import struct
import time
from collections import Counter
from pathlib import Path

import grpc

EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
_LEN = struct.Struct("<I")


def write_requests(path: Path, requests: list[tuple[bytes, int]]) -> None:
    """Store (serialized request, span count) pairs for the client."""
    with open(path, "wb") as out:
        for payload, spans in requests:
            out.write(_LEN.pack(len(payload)) + _LEN.pack(spans) + payload)


def read_requests(path: Path) -> list[tuple[bytes, int]]:
    data = path.read_bytes()
    out, offset = [], 0
    while offset < len(data):
        (size,) = _LEN.unpack_from(data, offset)
        (spans,) = _LEN.unpack_from(data, offset + 4)
        out.append((data[offset + 8 : offset + 8 + size], spans))
        offset += 8 + size
    return out


async def run(endpoint: str, requests: list[tuple[bytes, int]], streams: int, gzip: bool, max_seconds: float) -> dict:
    options = [("grpc.max_send_message_length", 64 * 1024 * 1024)]
    compression = grpc.Compression.Gzip if gzip else grpc.Compression.NoCompression
    outcome: Counter[str] = Counter()
    acked_spans = 0
    queue = list(reversed(requests))
    deadline = time.monotonic() + max_seconds
    async with grpc.aio.insecure_channel(endpoint, options=options, compression=compression) as channel:
        export = channel.unary_unary(EXPORT, request_serializer=None, response_deserializer=None)
        await channel.channel_ready()

        async def stream() -> None:
            nonlocal acked_spans
            while queue and time.monotonic() < deadline:
                payload, spans = queue.pop()
                try:
                    await export(payload, timeout=60)
                    outcome["ok"] += 1
                    acked_spans += spans
                except grpc.aio.AioRpcError as err:
                    outcome[err.code().name] += 1

        started = time.monotonic()
        cpu_started = time.process_time()
        await asyncio.gather(*(stream() for _ in range(streams)))
        seconds = time.monotonic() - started
        cpu_seconds = time.process_time() - cpu_started  # the client shares the machine's cores
    sent = sum(outcome.values())
    return {
        "sent": sent,
        "acked": outcome["ok"],
        "refused": {k: v for k, v in outcome.items() if k != "ok"},
        "spans_acked": acked_spans,
        "seconds": seconds,
        "spans_per_s": acked_spans / seconds if seconds > 0 else 0.0,
        "client_cpu_us_per_span": cpu_seconds / acked_spans * 1e6 if acked_spans else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--requests", type=Path, required=True)
    parser.add_argument("--streams", type=int, default=4)
    parser.add_argument("--gzip", action="store_true")
    parser.add_argument("--max-requests", type=int, default=10_000)
    parser.add_argument("--max-seconds", type=float, default=60.0)
    args = parser.parse_args(argv)
    requests = read_requests(args.requests)[: args.max_requests]
    result = asyncio.run(run(args.endpoint, requests, args.streams, args.gzip, args.max_seconds))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
