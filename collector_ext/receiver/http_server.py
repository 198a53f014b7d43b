"""OTLP/HTTP on the HTTP endpoint (FastAPI app, served by uvicorn in server.py).

Routes:
- `POST /v1/traces`, `POST /v1/metrics`: `application/x-protobuf` or `application/json` bodies, optionally
  `Content-Encoding: gzip` (or `deflate`, zlib format, which the Python exporter offers); the response is
  in the request's content type. Status codes per the OTLP/HTTP
  spec (errors.py): 400 bad data, 401, 413 too large (a compressed body is inflated only up to the limit),
  415 unsupported content type or encoding, 429 too many concurrent requests and 503 overloaded, both
  with `Retry-After`. Error bodies are a `google.rpc.Status` in the request's content type.
- `GET /metrics`: the receiver's Prometheus metrics. `GET /healthz`: liveness.
- `GET /v1/demand?agent=NAME` (or namespace=, service=; warmFloor=, targetPerReplica=): live demand as JSON
  for KEDA's `metrics-api` trigger (valueLocation `value`).

The blocking work (inflate, parse, decode, WAL fsync) runs in worker threads; a counter bounds the requests
in flight so that nothing queues without limit.
"""

from __future__ import annotations

import math
import threading
import time
import zlib
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from google.protobuf.message import Message
from google.rpc import code_pb2, status_pb2
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from starlette.concurrency import run_in_threadpool

from collector_ext import errors
from collector_ext.config import MIB, ReceiverConfig
from collector_ext.errors import ErrorKind, ReceiverError
from collector_ext.receiver import otlp_json
from collector_ext.receiver.ingest import (
    TraceIngest,
    bearer_matches,
    export_metrics_bytes,
    metrics_response,
    trace_response,
)
from collector_ext.receiver.telemetry import Telemetry

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
CONTENT_TYPES = {PROTOBUF: PROTOBUF, "application/protobuf": PROTOBUF, JSON: JSON}


def media_type(request: Request) -> str:
    raw = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if raw not in CONTENT_TYPES:
        raise ReceiverError(
            ErrorKind.UNSUPPORTED_MEDIA,
            f"unsupported content type {raw or '(none)'!r}: use {PROTOBUF} or {JSON}",
        )
    return CONTENT_TYPES[raw]


# Content-Encoding -> zlib window bits (None: not compressed)
ENCODINGS: dict[str, int | None] = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS, "identity": None, "": None}


async def read_body(request: Request, limit: int) -> tuple[bytes, int | None]:
    """The request body (at most `limit` bytes on the wire) and its zlib window bits (None: plain)."""
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ENCODINGS:
        raise ReceiverError(ErrorKind.UNSUPPORTED_MEDIA, f"unsupported content encoding {encoding!r}: use gzip")
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise errors.too_large(limit)
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise errors.too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks), ENCODINGS[encoding]


def inflate_capped(body: bytes, limit: int, wbits: int | None) -> bytes:
    """Inflate a gzip/deflate body, stopping as soon as the output passes `limit` (a bomb costs ~limit)."""
    if wbits is None:
        return body
    inflater = zlib.decompressobj(wbits)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as err:
        raise errors.malformed(f"body is not valid gzip/deflate: {err}") from None
    if len(out) > limit:
        raise errors.too_large(limit)
    if not inflater.eof:
        raise errors.malformed("compressed body is truncated")
    return out


def encode_message(message: Message, media: str) -> bytes:
    return message.SerializeToString() if media == PROTOBUF else otlp_json.encode(message)


def error_response(err: ReceiverError, media: str) -> Response:
    status = status_pb2.Status(code=getattr(code_pb2, err.status.grpc_code.name), message=err.message)
    headers = {}
    if err.status.retryable:
        headers["Retry-After"] = str(max(1, math.ceil(err.retry_after_s or 1)))
    return Response(
        encode_message(status, media), status_code=err.status.http_status, media_type=media, headers=headers
    )


class InFlight:
    """A non-blocking bound on concurrent export requests (past it: 429 with Retry-After)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.count = 0
        self._lock = threading.Lock()

    def enter(self, retry_after_s: float) -> None:
        with self._lock:
            if self.count >= self.limit:
                raise ReceiverError(ErrorKind.BUSY, "too many concurrent requests", retry_after_s)
            self.count += 1

    def leave(self) -> None:
        with self._lock:
            self.count -= 1


def build_app(
    ingest: TraceIngest,
    telemetry: Telemetry,
    config: ReceiverConfig,
    metrics_export: Callable[[ExportMetricsServiceRequest], tuple[int, str]] | None = None,
    demand: Callable[[dict], dict] | None = None,
    max_in_flight: int = 32,
) -> FastAPI:
    app = FastAPI(title="agentmeter collector-ext", docs_url=None, redoc_url=None, openapi_url=None)
    limit = config.max_recv_msg_mib * MIB
    token = config.bearer_token
    in_flight = InFlight(max_in_flight)
    retry_after_s = config.retry_after_seconds

    def traces_work(body: bytes, wbits: int | None, media: str) -> tuple[bytes, int]:
        payload = inflate_capped(body, limit, wbits)
        if media == JSON:
            try:
                request = otlp_json.parse_trace_request(payload)
            except otlp_json.OtlpJsonError as err:
                raise errors.malformed(str(err)) from None
            payload = request.SerializeToString()  # the WAL and the decoder take protobuf
        decoded = ingest.export(payload)
        return encode_message(trace_response(decoded), media), decoded.rejected

    def metrics_work(body: bytes, wbits: int | None, media: str) -> tuple[bytes, int]:
        payload = inflate_capped(body, limit, wbits)
        request = None  # protobuf: export_metrics_bytes parses it
        if media == JSON:
            try:
                request = otlp_json.parse_metrics_request(payload)
            except otlp_json.OtlpJsonError as err:
                raise errors.malformed(str(err)) from None
        rejected, message = export_metrics_bytes(payload, metrics_export, retry_after_s, request)
        return encode_message(metrics_response(rejected, message), media), rejected

    async def export(
        request: Request, signal: str, work: Callable[[bytes, int | None, str], tuple[bytes, int]]
    ) -> Response:
        started = time.perf_counter()
        media = PROTOBUF
        try:
            media = media_type(request)
            if not bearer_matches(request.headers.get("authorization"), token):
                raise ReceiverError(ErrorKind.UNAUTHENTICATED, "missing or wrong bearer token")
            in_flight.enter(retry_after_s)
            try:
                body, wbits = await read_body(request, limit)
                content, rejected = await run_in_threadpool(work, body, wbits, media)
            finally:
                in_flight.leave()
        except ReceiverError as err:
            telemetry.requests.labels("http", signal, err.kind.value).inc()
            return error_response(err, media)
        except Exception as err:  # never a traceback to the client; logged once here
            telemetry.log.exception("http export failed", signal=signal)
            mapped = errors.from_exception(err, retry_after_s)
            telemetry.requests.labels("http", signal, mapped.kind.value).inc()
            return error_response(mapped, media)
        telemetry.requests.labels("http", signal, "partial" if rejected else "ok").inc()
        telemetry.export_latency.labels("http", signal).observe(time.perf_counter() - started)
        return Response(content, status_code=200, media_type=media)

    @app.post("/v1/traces")
    async def post_traces(request: Request) -> Response:
        return await export(request, "traces", traces_work)

    @app.post("/v1/metrics")
    async def post_metrics(request: Request) -> Response:
        return await export(request, "metrics", metrics_work)

    @app.get("/metrics")
    def get_metrics() -> Response:
        body, content_type = telemetry.render()
        return Response(body, media_type=content_type)

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        return {"status": "ok"}

    @app.get("/v1/demand")
    def get_demand(request: Request) -> Response:
        if demand is None:
            return JSONResponse({"error": "live demand is not available"}, status_code=404)
        try:
            return JSONResponse(demand(dict(request.query_params)))
        except ValueError as err:
            return JSONResponse({"error": str(err)}, status_code=400)

    return app
