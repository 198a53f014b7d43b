"""Raw-bytes fuzzing of both transports, the OpenTelemetry Collector's `receiver/otlpreceiver` fuzz_test.go
pattern: arbitrary bytes and mutated valid requests (protobuf, OTLP/JSON, gzip and deflate bodies, every
content type) sent to gRPC `TraceService/Export` and HTTP `POST /v1/traces` of one real receiver. The
receiver never crashes or hangs (every call has a deadline; the process must still answer /healthz at
the end) and every answer is a defined status. Bounded examples: a few seconds."""

from __future__ import annotations

import gzip
import json
import zlib
from pathlib import Path

import grpc
import httpx
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from receiver_process import ReceiverProcess
from test_decode import kv, request_of, span

from collector_ext.decode.otlp_json import to_json_dict

pytestmark = pytest.mark.slow

EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
CALL_TIMEOUT_S = 20.0
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)

# gRPC: what each status may mean here (and nothing else may come back)
GRPC_DEFINED = {
    grpc.StatusCode.INVALID_ARGUMENT,  # malformed request
    grpc.StatusCode.RESOURCE_EXHAUSTED,  # past the size limit (only for large bodies)
    grpc.StatusCode.UNAVAILABLE,  # back-pressure, always with RetryInfo
}
HTTP_DEFINED = {200, 400, 413, 415, 429, 503}

VALID = request_of(
    span(0, name="chat", attributes=[kv("gen_ai.operation.name", "chat"), kv("gen_ai.usage.input_tokens", 12)]),
    span(1, parent_span_id=(1).to_bytes(8, "big"), attributes=[kv("gen_ai.response.id", "r-1")]),
).SerializeToString()
VALID_JSON = json.dumps(to_json_dict(request_of(span(2, name="json")))).encode()


@pytest.fixture(scope="module")
def receiver(tmp_path_factory):
    data = Path(tmp_path_factory.mktemp("fuzz")) / "data"
    data.mkdir()
    with ReceiverProcess(data, "--keep", "all", "--max-recv-msg-mib", "1", "--max-request-memory-mib", "8") as running:
        yield running
        assert running.healthy(), running.log()  # still serving after everything below


@pytest.fixture(scope="module")
def channel(receiver):
    with grpc.insecure_channel(receiver.grpc_endpoint) as open_channel:
        yield open_channel


@st.composite
def mutated(draw, base: bytes) -> bytes:
    """A valid body with a few bytes flipped, cut, inserted or duplicated."""
    data = bytearray(base)
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            break
        position = draw(st.integers(0, len(data) - 1))
        action = draw(st.sampled_from(["flip", "cut", "insert", "duplicate", "truncate"]))
        if action == "flip":
            data[position] ^= draw(st.integers(1, 255))
        elif action == "cut":
            del data[position : position + draw(st.integers(1, 16))]
        elif action == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=16))
        elif action == "duplicate":
            data[position:position] = data[position : position + draw(st.integers(1, 64))]
        else:
            del data[position:]
    return bytes(data)


@st.composite
def maybe_compressed(draw, body: bytes) -> bytes:
    """The body as is, gzip (one or two members, possibly cut short) or zlib: the server sniffs gRPC messages."""
    how = draw(st.sampled_from(["plain", "gzip", "gzip2", "zlib", "gzip-cut", "magic-garbage"]))
    if how == "gzip":
        return gzip.compress(body)
    if how == "gzip2":
        return gzip.compress(body) + gzip.compress(body[::-1])
    if how == "zlib":
        return zlib.compress(body)
    if how == "gzip-cut":
        packed = gzip.compress(body)
        return packed[: draw(st.integers(0, len(packed)))]
    if how == "magic-garbage":
        return b"\x1f\x8b" + body
    return body


bodies = st.one_of(
    st.binary(max_size=4096),
    mutated(VALID),
    mutated(VALID_JSON),
    st.just(VALID),
    st.just(b""),
).flatmap(maybe_compressed)


@FUZZ
@given(body=bodies, compression=st.sampled_from([None, grpc.Compression.Gzip, grpc.Compression.Deflate]))
def test_grpc_export_answers_every_byte_string_with_a_defined_status(channel, body: bytes, compression) -> None:
    call = channel.unary_unary(EXPORT, request_serializer=None, response_deserializer=None)
    try:
        call(body, timeout=CALL_TIMEOUT_S, compression=compression)  # OK (possibly a partial success)
    except grpc.RpcError as err:
        assert err.code() in GRPC_DEFINED, (err.code(), err.details())
        if err.code() == grpc.StatusCode.UNAVAILABLE:
            status = rpc_status.from_call(err)
            assert status is not None and status.details[0].Is(error_details_pb2.RetryInfo.DESCRIPTOR)


CONTENT_TYPES = ["application/x-protobuf", "application/protobuf", "application/json", "text/plain", ""]
ENCODINGS = [None, "gzip", "deflate", "br", "identity"]


@FUZZ
@given(body=bodies, content_type=st.sampled_from(CONTENT_TYPES), encoding=st.sampled_from(ENCODINGS))
def test_http_traces_answer_every_byte_string_with_a_defined_status(receiver, body, content_type, encoding) -> None:
    headers = {"content-type": content_type}
    if encoding:
        headers["content-encoding"] = encoding
    response = httpx.post(f"{receiver.http_url}/v1/traces", content=body, headers=headers, timeout=CALL_TIMEOUT_S)
    assert response.status_code in HTTP_DEFINED, (response.status_code, response.text)
    if response.status_code != 200 and content_type in CONTENT_TYPES[:3]:
        assert response.headers["content-type"] == content_type  # a google.rpc.Status in the type sent
