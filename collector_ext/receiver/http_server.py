"""OTLP/HTTP on the HTTP endpoint (FastAPI app, served by uvicorn in server.py).

Routes:
- `POST /v1/traces`, `POST /v1/metrics`: `application/x-protobuf`, `application/protobuf` or
  `application/json` bodies, optionally `Content-Encoding: gzip` (every member, compression.py) or
  `deflate`; the response is in the request's content type, as sent. Status codes per the OTLP/HTTP spec
  (receiver/status.py): 400 bad data with `google.rpc.BadRequest` details, 401, 408 a body that did not
  arrive within `--body-timeout-seconds`, 413 too large (a compressed body is inflated only up to the
  limit), 415 unsupported content type or encoding, 429 too many concurrent requests and 503 overloaded,
  both with `Retry-After`. Error bodies are a `google.rpc.Status` in the request's content type.
- `GET /metrics`: the receiver's Prometheus metrics (with `--bearer-token`, the token too unless
  `--no-metrics-auth`). `GET /healthz`: liveness, always open.
- `GET /v1/demand?agent=NAME` (or namespace=, service=; warmFloor=, targetPerReplica=): live demand as JSON
  for KEDA's `metrics-api` trigger (valueLocation `value`; `authMode: bearer` with `--bearer-token`).

A request is admitted in stages, each bounded by configuration: its body is read under the request-memory
budget and the body timeout (a slow body holds a connection and the bytes it sent, nothing else); then
the work (inflate, decode, WAL fsync) runs in a worker thread under the concurrency limit. OTLP/JSON is
parsed in the decode processes, never here. Connections and header timeouts: http_connections.py.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from google.protobuf.message import Message
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from collector_ext import errors
from collector_ext.config import MIB, ReceiverConfig
from collector_ext.decode import otlp_json
from collector_ext.decode.batch import Encoding
from collector_ext.errors import ErrorKind, ReceiverError
from collector_ext.receiver.admission import ConcurrencyLimit, Reservation
from collector_ext.receiver.compression import HTTP_ENCODINGS
from collector_ext.receiver.ingest import (
    MetricsExport,
    TraceIngest,
    bearer_matches,
    export_metrics,
    metrics_response,
    parse_metrics,
    trace_response,
)
from collector_ext.receiver.status import answer, retry_after_header, rpc_status
from collector_ext.receiver.telemetry import Telemetry

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
# content type as sent -> its encoding (the response goes out in the content type as sent)
CONTENT_TYPES = {PROTOBUF: Encoding.PROTOBUF, "application/protobuf": Encoding.PROTOBUF, JSON: Encoding.JSON}
UNAUTHENTICATED = ReceiverError(ErrorKind.UNAUTHENTICATED, "missing or wrong bearer token")
Inflate = Callable[[bytes, int], bytes] | None  # compression.HTTP_ENCODINGS values
Work = Callable[[bytes, Inflate, str, Reservation], tuple[bytes, int]]


def media_type(request: Request) -> str:
    raw = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if raw not in CONTENT_TYPES:
        raise ReceiverError(
            ErrorKind.UNSUPPORTED_MEDIA,
            f"unsupported content type {raw or '(none)'!r}: use {PROTOBUF}, application/protobuf or {JSON}",
        )
    return raw


def content_encoding(request: Request) -> Inflate:
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in HTTP_ENCODINGS:
        raise ReceiverError(ErrorKind.UNSUPPORTED_MEDIA, f"unsupported content encoding {encoding!r}: use gzip")
    return HTTP_ENCODINGS[encoding]


async def read_body(request: Request, limit: int, reservation: Reservation, timeout_s: float) -> bytes:
    """The request body (at most `limit` bytes on the wire, held in `reservation`) within `timeout_s`."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise errors.too_large(limit)
    chunks = []
    size = 0
    try:
        async with asyncio.timeout(timeout_s):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise errors.too_large(limit)
                reservation.add(len(chunk))
                chunks.append(chunk)
    except TimeoutError:
        raise ReceiverError(
            ErrorKind.BODY_TIMEOUT, f"request body not received within {timeout_s:g} s ({size} bytes arrived)"
        ) from None
    return b"".join(chunks)


def encode_message(message: Message, media: str) -> bytes:
    return otlp_json.encode(message) if CONTENT_TYPES.get(media) is Encoding.JSON else message.SerializeToString()


def error_response(err: ReceiverError, media: str, default_retry_s: float) -> Response:
    headers = {}
    if answer(err).retryable:
        headers["Retry-After"] = retry_after_header(err, default_retry_s)
    if err.kind is ErrorKind.BODY_TIMEOUT:
        headers["Connection"] = "close"  # the rest of the body may still come: do not read it as a request
    if err.kind is ErrorKind.UNAUTHENTICATED:
        headers["WWW-Authenticate"] = "Bearer"
    body = encode_message(rpc_status(err, default_retry_s), media)
    return Response(body, status_code=answer(err).http_status, media_type=media, headers=headers)


def build_app(
    ingest: TraceIngest,
    telemetry: Telemetry,
    config: ReceiverConfig,
    metrics_export: MetricsExport | None = None,
    demand: Callable[[dict], dict] | None = None,
) -> FastAPI:
    app = FastAPI(title="agentmeter collector-ext", docs_url=None, redoc_url=None, openapi_url=None)
    limit = config.max_recv_msg_mib * MIB
    token = config.bearer_token
    metrics_token = token if config.metrics_auth else None
    in_flight = ConcurrencyLimit(config.max_concurrent_requests, config.retry_after_seconds)
    retry_after_s = config.retry_after_seconds
    body_timeout_s = config.body_timeout_seconds

    def inflate(body: bytes, inflater: Inflate, reservation: Reservation) -> bytes:
        if inflater is None:
            return body
        reservation.add(limit)  # the worst case while inflating, trimmed right after
        payload = inflater(body, limit)
        reservation.shrink_to(len(body) + len(payload))
        return payload

    def traces_work(body: bytes, inflater: Inflate, media: str, reservation: Reservation) -> tuple[bytes, int]:
        decoded = ingest.export(inflate(body, inflater, reservation), CONTENT_TYPES[media])
        return encode_message(trace_response(decoded), media), decoded.rejected

    def metrics_work(body: bytes, inflater: Inflate, media: str, reservation: Reservation) -> tuple[bytes, int]:
        payload = inflate(body, inflater, reservation)
        if CONTENT_TYPES[media] is Encoding.JSON:
            try:
                with ingest.decoder.json_slot():
                    request = otlp_json.parse_metrics_request(payload)
            except otlp_json.OtlpJsonError as err:
                raise errors.malformed(str(err), err.path) from None
        else:
            request = parse_metrics(payload)
        rejected, message = export_metrics(request, metrics_export)
        return encode_message(metrics_response(rejected, message), media), rejected

    async def export(request: Request, signal: str, work: Work) -> Response:
        started = time.perf_counter()
        media = PROTOBUF
        try:
            media = media_type(request)
            if not bearer_matches(request.headers.get("authorization"), token):
                raise UNAUTHENTICATED
            inflater = content_encoding(request)
            with ingest.memory.reservation() as reservation:
                body = await read_body(request, limit, reservation, body_timeout_s)
                in_flight.enter()
                try:
                    content, rejected = await run_in_threadpool(work, body, inflater, media, reservation)
                finally:
                    in_flight.leave()
        except ClientDisconnect:  # the client went away mid-body: nobody to answer
            telemetry.requests.labels("http", signal, "disconnected").inc()
            return Response(status_code=400)
        except Exception as err:  # every failure is answered by its kind; never a traceback to the client
            mapped = errors.from_exception(err)
            if mapped.kind is ErrorKind.INTERNAL:
                telemetry.log.exception("http export failed", signal=signal)
            telemetry.requests.labels("http", signal, mapped.kind.value).inc()
            return error_response(mapped, media, retry_after_s)
        telemetry.requests.labels("http", signal, "partial" if rejected else "ok").inc()
        telemetry.export_latency.labels("http", signal).observe(time.perf_counter() - started)
        return Response(content, status_code=200, media_type=media)

    def unauthenticated_json() -> JSONResponse:
        return JSONResponse({"error": UNAUTHENTICATED.message}, status_code=401, headers={"WWW-Authenticate": "Bearer"})

    @app.post("/v1/traces")
    async def post_traces(request: Request) -> Response:
        return await export(request, "traces", traces_work)

    @app.post("/v1/metrics")
    async def post_metrics(request: Request) -> Response:
        return await export(request, "metrics", metrics_work)

    @app.get("/metrics")
    def get_metrics(request: Request) -> Response:
        if not bearer_matches(request.headers.get("authorization"), metrics_token):
            return Response(UNAUTHENTICATED.message, status_code=401, headers={"WWW-Authenticate": "Bearer"})
        body, content_type = telemetry.render()
        return Response(body, media_type=content_type)

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        return {"status": "ok"}

    @app.get("/v1/demand")
    def get_demand(request: Request) -> Response:
        if not bearer_matches(request.headers.get("authorization"), token):
            return unauthenticated_json()
        if demand is None:
            return JSONResponse({"error": "live demand is not available"}, status_code=404)
        try:
            return JSONResponse(demand(dict(request.query_params)))
        except ValueError as err:
            return JSONResponse({"error": str(err)}, status_code=400)

    return app
