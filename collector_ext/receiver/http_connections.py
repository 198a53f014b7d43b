"""HTTP connections that clients cannot hold forever: uvicorn's h11 protocol with a header timeout and a
connection limit that never turns away health checks.

What uvicorn (0.3x, `protocols/http/h11_impl.py`) does and does not do, and what this adds:
- An idle keep-alive connection (after a response) is closed after `timeout_keep_alive` (5 s), but a new
  connection that never sends a request, or sends its headers a byte at a time, is held forever: there is
  no header timeout. Added: a connection must deliver a complete request head within
  `--header-timeout-seconds` of opening (or of its previous response), else it is closed (as Go's
  `http.Server.ReadHeaderTimeout`, which the Collector's confighttp sets).
- `limit_concurrency` counts connections and answers 503 to *every* request past it, `/healthz` included,
  for as long as idle connections stay: not used. Instead at most `--max-connections` stay open: a new
  connection past it closes the oldest connection that has no request in progress (an idle or slow-header
  one), or itself when every connection is busy.
- No body timeout: the app enforces one while reading the body (http_server.read_body, 408).

Header size is bounded by h11 (`h11_max_incomplete_event_size`, 16 KiB by default: 431 past it).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol


class GuardedH11Protocol(H11Protocol):
    """H11Protocol with a header timeout and a connection limit (class attributes set by `guarded_protocol`)."""

    header_timeout_s: float = 10.0
    max_connections: int = 256

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None
        self.last_active = time.monotonic()

    # -- lifecycle ----------------------------------------------------------------------------------
    # narrower than asyncio.BaseProtocol's BaseTransport, as uvicorn's own H11Protocol.connection_made is
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()
        if len(self.connections) > self.max_connections:
            self._make_room()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_timer()
        super().connection_lost(exc)

    def handle_events(self) -> None:
        super().handle_events()
        if self.conn.their_state is not h11.IDLE:  # a request head arrived (or the connection is ending)
            self._disarm_header_timer()
            self.last_active = time.monotonic()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self.last_active = time.monotonic()
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            self._arm_header_timer()

    # -- header timeout -----------------------------------------------------------------------------
    def _arm_header_timer(self) -> None:
        self._disarm_header_timer()
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._header_timeout)

    def _disarm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timeout(self) -> None:
        self._header_timer = None
        if self.waiting_for_request and not self.transport.is_closing():
            self.transport.close()

    # -- connection limit ---------------------------------------------------------------------------
    @property
    def waiting_for_request(self) -> bool:
        """No request in progress: idle, or its headers still arriving."""
        return self.conn.their_state is h11.IDLE and (self.cycle is None or self.cycle.response_complete)

    def _make_room(self) -> None:
        others = [c for c in self.connections if c is not self and isinstance(c, GuardedH11Protocol)]
        idle = [c for c in others if c.waiting_for_request and not c.transport.is_closing()]
        if idle:
            min(idle, key=lambda c: c.last_active).transport.close()
        else:
            self.transport.close()


def guarded_protocol(header_timeout_s: float, max_connections: int) -> type[GuardedH11Protocol]:
    """The protocol class for uvicorn's `http=` setting, with this receiver's limits."""
    return type(
        "ReceiverH11Protocol",
        (GuardedH11Protocol,),
        {"header_timeout_s": header_timeout_s, "max_connections": max_connections},
    )
