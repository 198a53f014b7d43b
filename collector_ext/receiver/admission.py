"""Admission: what the receiver takes on at once is bounded by its configuration, never by its clients.

- `RequestMemory`: the bytes of request bodies held at once, as received and inflated, across both
  transports (`--max-request-memory-mib`). A request that would pass it is refused with OVERLOADED
  (UNAVAILABLE / 503 with a retry delay) instead of being read further; each request's `Reservation`
  gives its bytes back when the request is answered.
- `ConcurrencyLimit`: export requests in progress on one transport (`--max-concurrent-requests`); past it
  BUSY (UNAVAILABLE + RetryInfo / 429 + Retry-After). Never gRPC's own RESOURCE_EXHAUSTED, which OTLP
  clients drop when it carries no RetryInfo.

Together with the size limit (`--max-recv-msg-mib`) and the decode processes (one OTLP/JSON parse at a
time), these make the receiver's memory a function of its flags.
"""

from __future__ import annotations

import threading

from collector_ext.errors import ErrorKind, ReceiverError


class RequestMemory:
    """A byte budget shared by every request of both transports."""

    def __init__(self, limit_bytes: int, retry_after_s: float) -> None:
        self.limit = limit_bytes
        self.retry_after_s = retry_after_s
        self.used = 0
        self._lock = threading.Lock()

    def reservation(self) -> Reservation:
        return Reservation(self)

    def _take(self, size: int) -> None:
        with self._lock:
            if self.used + size > self.limit:
                raise ReceiverError(
                    ErrorKind.OVERLOADED,
                    f"receiver cannot take more data now: {self.used} of {self.limit} bytes of request memory in use",
                    self.retry_after_s,
                )
            self.used += size

    def _give(self, size: int) -> None:
        with self._lock:
            self.used -= size


class Reservation:
    """The bytes one request holds; `release()` (or the context's end) gives them all back."""

    def __init__(self, memory: RequestMemory) -> None:
        self.memory = memory
        self.size = 0

    def add(self, size: int) -> None:
        """Hold `size` more bytes; raises OVERLOADED when the budget has no room."""
        self.memory._take(size)
        self.size += size

    def shrink_to(self, size: int) -> None:
        """Hold `size` bytes in all (after a worst-case reservation turned out larger than needed)."""
        if size < self.size:
            self.memory._give(self.size - size)
            self.size = size

    def release(self) -> None:
        self.memory._give(self.size)
        self.size = 0

    def __enter__(self) -> Reservation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class ConcurrencyLimit:
    """A non-blocking bound on requests in progress (past it: BUSY, retryable)."""

    def __init__(self, limit: int, retry_after_s: float) -> None:
        self.limit = limit
        self.retry_after_s = retry_after_s
        self.count = 0
        self._lock = threading.Lock()

    def enter(self) -> None:
        with self._lock:
            if self.count >= self.limit:
                raise ReceiverError(
                    ErrorKind.BUSY, f"too many concurrent requests (limit {self.limit})", self.retry_after_s
                )
            self.count += 1

    def leave(self) -> None:
        with self._lock:
            self.count -= 1
