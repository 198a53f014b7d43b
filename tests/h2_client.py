"""A raw HTTP/2 gRPC client (the `h2` state machine over a blocking socket) for what real gRPC clients never
send: a message compressed by hand (several gzip members), arbitrary framing, and streams opened and
reset as fast as possible (HTTP/2 rapid reset). Every wait is bounded by a deadline.

gRPC over HTTP/2 (grpc/grpc `doc/PROTOCOL-HTTP2.md`): a POST with `content-type: application/grpc` and
`te: trailers`; each message is a 1-byte compressed flag, a 4-byte big-endian length and the bytes; the
status comes in the trailers (`grpc-status`, `grpc-message`, `grpc-status-details-bin`), or in the headers
of a trailers-only response.
"""

from __future__ import annotations

import base64
import socket
import struct
import time
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.errors
import h2.events


@dataclass
class RawResponse:
    headers: dict[str, str] = field(default_factory=dict)
    trailers: dict[str, str] = field(default_factory=dict)
    data: bytes = b""
    reset_code: int | None = None  # the server reset the stream instead of answering

    @property
    def grpc_status(self) -> int | None:
        value = self.trailers.get("grpc-status", self.headers.get("grpc-status"))
        return None if value is None else int(value)

    @property
    def grpc_message(self) -> str:
        return self.trailers.get("grpc-message", self.headers.get("grpc-message", ""))

    def binary_trailer(self, name: str) -> bytes | None:
        value = self.trailers.get(name, self.headers.get(name))
        return None if value is None else base64.b64decode(value + "=" * (-len(value) % 4))


def frame(message: bytes, compressed: bool) -> bytes:
    return struct.pack(">BI", 1 if compressed else 0, len(message)) + message


class RawGrpcConnection:
    def __init__(self, host: str, port: int, timeout_s: float = 20.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout_s)
        self.authority = f"{host}:{port}"
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        self.h2.initiate_connection()
        self.sock.sendall(self.h2.data_to_send())
        self.responses: dict[int, RawResponse] = {}
        self.ended: set[int] = set()
        self.refused = 0  # streams the server refused: REFUSED_STREAM, or ENHANCE_YOUR_CALM before SETTINGS are acked

    def close(self) -> None:
        try:
            self.h2.close_connection()
            self.sock.sendall(self.h2.data_to_send())
        except OSError:
            pass
        self.sock.close()

    def __enter__(self) -> RawGrpcConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _headers(self, path: str, encoding: str | None, extra: list[tuple[str, str]]) -> list[tuple[str, str]]:
        headers = [
            (":method", "POST"),
            (":scheme", "http"),
            (":path", path),
            (":authority", self.authority),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
        ]
        if encoding:
            headers.append(("grpc-encoding", encoding))
        return headers + extra

    def send(self, path: str, body: bytes, encoding: str | None = None, extra=()) -> int:
        """Start a call whose request DATA is `body` as given (framed or not: see `frame`); returns its id."""
        stream = self.h2.get_next_available_stream_id()
        self.h2.send_headers(stream, self._headers(path, encoding, list(extra)))
        window = self.h2.local_flow_control_window(stream)
        sent = 0
        while sent < len(body):  # bounded by the body; waits for WINDOW_UPDATEs as a client must
            chunk = body[sent : sent + min(window, self.h2.max_outbound_frame_size, len(body) - sent)]
            if chunk:
                self.h2.send_data(stream, chunk)
                sent += len(chunk)
                self.sock.sendall(self.h2.data_to_send())
            window = self.h2.local_flow_control_window(stream)
            if window == 0 and sent < len(body):
                self._pump(time.monotonic() + 20)
                window = self.h2.local_flow_control_window(stream)
        self.h2.end_stream(stream)
        self.sock.sendall(self.h2.data_to_send())
        self.responses[stream] = RawResponse()
        return stream

    def call(self, path: str, body: bytes, encoding: str | None = None, timeout_s: float = 20.0) -> RawResponse:
        stream = self.send(path, body, encoding)
        deadline = time.monotonic() + timeout_s
        while stream not in self.ended:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no answer on stream {stream} within {timeout_s} s")
            self._pump(deadline)
        return self.responses[stream]

    def open_and_reset(self, path: str, count: int) -> None:
        """HTTP/2 rapid reset: `count` streams, each HEADERS then RST_STREAM(CANCEL) at once."""
        for _ in range(count):
            stream = self.h2.get_next_available_stream_id()
            self.h2.send_headers(stream, self._headers(path, None, []))
            self.h2.reset_stream(stream, h2.errors.ErrorCodes.CANCEL)
        self.sock.sendall(self.h2.data_to_send())

    def open_held(self, path: str, count: int) -> list[int]:
        """`count` streams with headers sent and no body yet (held open)."""
        streams = []
        for _ in range(count):
            stream = self.h2.get_next_available_stream_id()
            self.h2.send_headers(stream, self._headers(path, None, []))
            self.responses[stream] = RawResponse()
            streams.append(stream)
        self.sock.sendall(self.h2.data_to_send())
        return streams

    def drain(self, seconds: float) -> None:
        """Read whatever the server sends for `seconds` (counting refused streams)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self._pump(deadline)

    def _pump(self, deadline: float) -> None:
        self.sock.settimeout(max(0.01, min(1.0, deadline - time.monotonic())))
        try:
            data = self.sock.recv(1 << 16)
        except TimeoutError:
            return
        if not data:
            raise ConnectionError("the server closed the connection")
        for event in self.h2.receive_data(data):
            stream = getattr(event, "stream_id", None)
            response = self.responses.setdefault(stream, RawResponse()) if stream else None
            if isinstance(event, h2.events.ResponseReceived):
                response.headers.update(event.headers)
            elif isinstance(event, h2.events.TrailersReceived):
                response.trailers.update(event.headers)
            elif isinstance(event, h2.events.DataReceived):
                response.data += event.data
                self.h2.acknowledge_received_data(event.flow_controlled_length, stream)
            elif isinstance(event, h2.events.StreamEnded):
                self.ended.add(stream)
            elif isinstance(event, h2.events.StreamReset):
                response.reset_code = event.error_code
                self.ended.add(stream)
                if event.error_code in (h2.errors.ErrorCodes.REFUSED_STREAM, h2.errors.ErrorCodes.ENHANCE_YOUR_CALM):
                    self.refused += 1
        outgoing = self.h2.data_to_send()
        if outgoing:
            self.sock.sendall(outgoing)
