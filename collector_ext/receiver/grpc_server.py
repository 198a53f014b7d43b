"""OTLP/gRPC: `TraceService/Export` and `MetricsService/Export` on a sync grpc.Server.

The handlers are registered with a generic handler and no deserializer: they receive the raw request
bytes, inflate them (compression.py: grpc core's own decompression is off because it refuses multi-member
gzip), parse once, and hand the same bytes to the WAL, never re-serializing.

The sync server reads a request's message in the worker thread that runs the call, so a client that opens
a stream and never sends its message would hold a worker for as long as it likes (4 such streams stop every
export). The handlers are therefore registered as stream-unary: they get the request iterator at once, read
the one message under a deadline (`--body-timeout-seconds`, `MessageDeadlines`), and a call whose message
has not arrived by then is cancelled, which frees the worker.

Bounded everywhere, and every transient refusal is retryable:
- Concurrency is ours, not gRPC's: `maximum_concurrent_rpcs` is not set (past it grpc answers
  RESOURCE_EXHAUSTED without RetryInfo, which OTLP clients drop). The executor counts the RPCs it holds,
  queued or running; the generic handler, which grpc consults in its serving thread before queueing an RPC,
  answers past `--max-concurrent-requests` with UNAVAILABLE + RetryInfo (status details and the
  `google.rpc.retryinfo-bin` trailer that the Python OTLP exporter reads). A queued RPC has not read its
  message yet (the sync server reads it in the worker), so the queue costs little memory.
- Request memory (admission.py) and the size limit, on the message as sent and as inflated.
- HTTP/2, from grpc core's chttp2 transport (`chttp2_transport.cc` read_channel_args, `parsing.cc`
  init_header_frame_parser): `grpc.max_concurrent_streams` per connection, which with the overload
  protection that core turns on by default (`grpc.http.overload_protection`) counts reset streams until
  they are freed, so an HTTP/2 rapid reset (HEADERS then RST_STREAM, again and again) gets REFUSED_STREAM
  past the limit instead of queueing work; `grpc.http2.max_pending_induced_frames` bounds the frames such
  a peer makes us queue; `grpc.max_allowed_incoming_connections` bounds connections (file descriptors);
  `grpc.server_handshake_timeout_ms` closes connections that never finish their handshake and
  `grpc.max_connection_idle_ms` those without an RPC for a while (clients reconnect transparently).

A sync server was chosen over grpc.aio after measuring both (60 x 1000-span requests, 4 client streams,
two alternating rounds, full pipeline): grpc.aio with the blocking export in a 4-thread executor 26-29 k
spans/s; sync with 8 workers 30-34 k; sync with 4 workers 33-37 k. The work per request (parse, decode,
fsync) is blocking and holds the GIL most of the time, so more threads only add contention.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import grpc
from grpc_status import rpc_status

from collector_ext import errors
from collector_ext.config import MIB, ReceiverConfig
from collector_ext.errors import ErrorKind, ReceiverError
from collector_ext.receiver.admission import Reservation
from collector_ext.receiver.compression import inflate_grpc_message, maybe_compressed
from collector_ext.receiver.ingest import (
    MetricsExport,
    TraceIngest,
    bearer_matches,
    export_metrics,
    metrics_response,
    parse_metrics,
    trace_response,
)
from collector_ext.receiver.status import answer, retry_info
from collector_ext.receiver.status import rpc_status as status_message
from collector_ext.receiver.telemetry import Telemetry

TRACE_SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"
METRICS_SERVICE = "opentelemetry.proto.collector.metrics.v1.MetricsService"
RETRY_INFO_TRAILER = "google.rpc.retryinfo-bin"
EXPORT_WORKERS = 4
CONNECTION_IDLE_MS = 5 * 60 * 1000
MAX_PENDING_INDUCED_FRAMES = 1000  # grpc core's default is 10,000


def grpc_status(err: ReceiverError, default_retry_s: float) -> grpc.Status:
    """The rich status (google.rpc.Status in `grpc-status-details-bin`) plus, when retryable, RetryInfo in
    its own trailer."""
    status = rpc_status.to_status(status_message(err, default_retry_s))
    if not answer(err).retryable:
        return status
    trailer = (RETRY_INFO_TRAILER, retry_info(err, default_retry_s).SerializeToString())
    return _Status(status.code, status.details, (*status.trailing_metadata, trailer))


class _Status(grpc.Status):
    def __init__(self, code: grpc.StatusCode, details: str, trailing_metadata: tuple) -> None:
        self.code = code
        self.details = details
        self.trailing_metadata = trailing_metadata


def bearer_ok(metadata: Any, token: str | None) -> bool:
    header = next((value for key, value in metadata or () if key == "authorization"), None)
    return bearer_matches(header, token)


class CountingExecutor(ThreadPoolExecutor):
    """A thread pool that knows how many RPCs it holds, queued or running (grpc submits each RPC once, and
    every submitted function runs, even for an RPC cancelled while queued, so the count never leaks)."""

    def __init__(self, max_workers: int, thread_name_prefix: str) -> None:
        super().__init__(max_workers=max_workers, thread_name_prefix=thread_name_prefix)
        self.held = 0
        self._count_lock = threading.Lock()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        with self._count_lock:
            self.held += 1
        try:
            return super().submit(self._counted, fn, *args, **kwargs)
        except BaseException:
            self._done()
            raise

    def _counted(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        finally:
            self._done()

    def _done(self) -> None:
        with self._count_lock:
            self.held -= 1


class MessageDeadlines:
    """One thread that cancels calls whose request message has not arrived in time (see the docstring)."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._heap: list[tuple[float, int]] = []
        self._waiting: dict[int, grpc.ServicerContext] = {}
        self._ids = itertools.count()
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None

    def watch(self, context: grpc.ServicerContext) -> int:
        ticket = next(self._ids)
        with self._changed:
            self._waiting[ticket] = context
            heapq.heappush(self._heap, (time.monotonic() + self.timeout_s, ticket))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="grpc-message-deadlines", daemon=True)
                self._thread.start()
            self._changed.notify()
        return ticket

    def arrived(self, ticket: int) -> None:
        with self._changed:
            self._waiting.pop(ticket, None)

    def _run(self) -> None:
        while True:
            with self._changed:
                while not self._heap or self._heap[0][0] > time.monotonic():
                    self._changed.wait(self._heap[0][0] - time.monotonic() if self._heap else None)
                _, ticket = heapq.heappop(self._heap)
                context = self._waiting.pop(ticket, None)
            if context is not None:
                context.cancel()  # wakes the worker waiting for the message: its iterator ends


class AdmittingHandler(grpc.GenericRpcHandler):
    """Routes methods to their handlers; past the concurrency limit, to a handler that refuses retryably.

    grpc calls `service()` in its serving thread before it queues the RPC on the executor, so the count it
    reads includes every RPC accepted before this one."""

    def __init__(
        self,
        methods: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]],
        executor: CountingExecutor,
        limit: int,
    ) -> None:
        self.methods = methods  # method path -> (its handler, its refusal)
        self.executor = executor
        self.limit = limit

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        handlers = self.methods.get(handler_call_details.method)
        if handlers is None:
            return None
        handler, refuse = handlers
        return refuse if self.executor.held >= self.limit else handler


def _raw(fn: Callable[[Iterator[bytes], grpc.ServicerContext], bytes]) -> grpc.RpcMethodHandler:
    """A unary method on the wire, served stream-unary so that the handler reads its message itself."""
    return grpc.stream_unary_rpc_method_handler(fn, request_deserializer=None, response_serializer=None)


class GrpcHandlers:
    """The two Export methods over raw bytes, and the refusal past the concurrency limit."""

    def __init__(
        self,
        ingest: TraceIngest,
        telemetry: Telemetry,
        config: ReceiverConfig,
        metrics_export: MetricsExport | None,
    ) -> None:
        self.ingest = ingest
        self.telemetry = telemetry
        self.token = config.bearer_token
        self.metrics_export = metrics_export
        self.retry_after_s = config.retry_after_seconds
        self.limit_bytes = config.max_recv_msg_mib * MIB
        self.max_concurrent = config.max_concurrent_requests
        self.deadlines = MessageDeadlines(config.body_timeout_seconds)

    def _fail(self, context: grpc.ServicerContext, signal: str, err: ReceiverError) -> None:
        self.telemetry.requests.labels("grpc", signal, err.kind.value).inc()
        context.abort_with_status(grpc_status(err, self.retry_after_s))

    def _message(self, requests: Iterator[bytes], context: grpc.ServicerContext) -> bytes | None:
        """The call's one request message, or None when it did not arrive in time (the call is cancelled)."""
        ticket = self.deadlines.watch(context)
        try:
            payload = next(requests, None)
        finally:
            self.deadlines.arrived(ticket)
        if payload is None and context.is_active():
            raise errors.malformed("the call carries no request message")
        return payload

    def _admit(
        self, requests: Iterator[bytes], context: grpc.ServicerContext, reservation: Reservation
    ) -> bytes | None:
        """Check the token, read the message, hold its memory, inflate it. None: cancelled. Raises ReceiverError."""
        if not bearer_ok(context.invocation_metadata(), self.token):
            raise ReceiverError(ErrorKind.UNAUTHENTICATED, "missing or wrong bearer token")
        payload = self._message(requests, context)
        if payload is None:
            return None
        reservation.add(len(payload))
        if not maybe_compressed(payload):
            return payload
        reservation.add(self.limit_bytes)  # the worst case while inflating, trimmed right after
        message = inflate_grpc_message(payload, self.limit_bytes)
        reservation.shrink_to(len(payload) + (len(message) if message is not payload else 0))
        return message

    def _timed_out(self, signal: str) -> bytes:
        self.telemetry.requests.labels("grpc", signal, ErrorKind.BODY_TIMEOUT.value).inc()
        return b""  # the call is cancelled: nobody reads this

    def export_traces(self, requests: Iterator[bytes], context: grpc.ServicerContext) -> bytes:
        started = time.perf_counter()
        try:
            with self.ingest.memory.reservation() as reservation:
                message = self._admit(requests, context, reservation)
                if message is None:
                    return self._timed_out("traces")
                decoded = self.ingest.export(message)
        except ReceiverError as err:
            self._fail(context, "traces", err)
        outcome = "partial" if decoded.rejected else "ok"
        self.telemetry.requests.labels("grpc", "traces", outcome).inc()
        self.telemetry.export_latency.labels("grpc", "traces").observe(time.perf_counter() - started)
        return trace_response(decoded).SerializeToString()

    def export_metrics(self, requests: Iterator[bytes], context: grpc.ServicerContext) -> bytes:
        started = time.perf_counter()
        try:
            with self.ingest.memory.reservation() as reservation:
                message = self._admit(requests, context, reservation)
                if message is None:
                    return self._timed_out("metrics")
                rejected, text = export_metrics(parse_metrics(message), self.metrics_export)
        except ReceiverError as err:
            self._fail(context, "metrics", err)
        self.telemetry.requests.labels("grpc", "metrics", "partial" if rejected else "ok").inc()
        self.telemetry.export_latency.labels("grpc", "metrics").observe(time.perf_counter() - started)
        return metrics_response(rejected, text).SerializeToString()

    def _refusal(self, signal: str) -> grpc.RpcMethodHandler:
        """Past the concurrency limit: answered at once, without reading the message."""

        def refuse(requests: Iterator[bytes], context: grpc.ServicerContext) -> bytes:
            limit = self.max_concurrent
            busy = ReceiverError(ErrorKind.BUSY, f"too many concurrent requests (limit {limit})", self.retry_after_s)
            self._fail(context, signal, busy)
            return b""  # not reached: abort raises

        return _raw(refuse)

    def generic_handler(self, executor: CountingExecutor) -> AdmittingHandler:
        methods = {
            f"/{TRACE_SERVICE}/Export": (_raw(self.export_traces), self._refusal("traces")),
            f"/{METRICS_SERVICE}/Export": (_raw(self.export_metrics), self._refusal("metrics")),
        }
        return AdmittingHandler(methods, executor, self.max_concurrent)


def server_credentials(config: ReceiverConfig) -> grpc.ServerCredentials | None:
    if config.tls_cert is None or config.tls_key is None:  # config validation refuses a CA without a cert
        return None
    root = config.tls_client_ca.read_bytes() if config.tls_client_ca else None
    return grpc.ssl_server_credentials(
        [(config.tls_key.read_bytes(), config.tls_cert.read_bytes())],
        root_certificates=root,
        require_client_auth=root is not None,
    )


def server_options(config: ReceiverConfig) -> list[tuple[str, int]]:
    """The channel arguments of every gRPC server of the receiver (see the module docstring)."""
    limit = config.max_recv_msg_mib * MIB
    return [
        ("grpc.max_receive_message_length", limit),  # the message as sent; inflating is capped in compression.py
        ("grpc.max_send_message_length", 4 * MIB),
        ("grpc.so_reuseport", 0),
        ("grpc.per_message_decompression", 0),
        ("grpc.max_concurrent_streams", config.grpc_max_concurrent_streams),
        ("grpc.http.overload_protection", 1),
        ("grpc.http2.max_pending_induced_frames", MAX_PENDING_INDUCED_FRAMES),
        ("grpc.max_allowed_incoming_connections", config.max_connections),
        ("grpc.server_handshake_timeout_ms", int(config.header_timeout_seconds * 1000)),
        ("grpc.max_connection_idle_ms", CONNECTION_IDLE_MS),
    ]


def build_grpc_server(
    handlers: Callable[[CountingExecutor], list[grpc.GenericRpcHandler]],
    endpoint: str,
    config: ReceiverConfig,
    workers: int = EXPORT_WORKERS,
    maximum_concurrent_rpcs: int | None = None,
) -> tuple[grpc.Server, int]:
    """A bounded sync server bound to `endpoint` (port 0 picks one); returns (server, bound port).

    `handlers` gets the server's executor (whose `held` count the admission reads). `maximum_concurrent_rpcs`
    is for servers that are not OTLP (the KEDA scaler), where gRPC's own RESOURCE_EXHAUSTED is fine."""
    executor = CountingExecutor(max_workers=workers, thread_name_prefix="grpc")
    server = grpc.server(
        executor,
        handlers=handlers(executor),
        options=server_options(config),
        maximum_concurrent_rpcs=maximum_concurrent_rpcs,
    )
    credentials = server_credentials(config)
    try:
        if credentials is not None:
            port = server.add_secure_port(endpoint, credentials)
        else:
            port = server.add_insecure_port(endpoint)
    except RuntimeError:  # grpc reports a failed bind as RuntimeError
        port = 0
    if port == 0 and not endpoint.endswith(":0"):
        raise OSError(f"cannot listen on {endpoint} (address in use?)")
    return server, port
