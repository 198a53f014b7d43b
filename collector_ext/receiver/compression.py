"""Request bodies inflated whole and within the size limit, for both transports.

gzip: every member of the body, as Go's `compress/gzip.Reader` reads it in its default multistream mode
(the OpenTelemetry Collector's confighttp decompresses with it): concatenated members are one stream, and
bytes after the last member that are not another member make the body malformed. Some clients and proxies
send several members; decoding only the first would acknowledge spans that were never read.
deflate: one zlib stream (RFC 1950), as grpc core's `message_compress.cc` and the Python exporters make it.

Output stops as soon as it passes `limit` (a decompression bomb costs about `limit`, never more).

gRPC: grpc core's own decompression (`message_compress.cc`, zlib_body) refuses a multi-member gzip message
as "not all input consumed" (INTERNAL, which OTLP clients do not retry), so the receiver's gRPC server
turns it off (`grpc.per_message_decompression` = 0) and inflates here instead. The message then arrives
as sent, and its encoding is told from its first bytes: a gzip member starts 1f 8b, which can never start a
protobuf message (wire type 7 does not exist); a zlib stream starts with a header whose 16-bit value is a
multiple of 31 (RFC 1950), and is taken as one only if it inflates cleanly, otherwise the bytes are parsed
as protobuf as they are.
"""

from __future__ import annotations

import zlib

from collector_ext import errors

GZIP_MAGIC = b"\x1f\x8b"
GZIP_WBITS = 16 + zlib.MAX_WBITS
ZLIB_WBITS = zlib.MAX_WBITS


def _inflate_stream(data: bytes, wbits: int, limit: int, produced: int) -> tuple[list[bytes], bytes, int]:
    """One compressed stream (one gzip member): its output chunks, the bytes after it, the total size."""
    inflater = zlib.decompressobj(wbits)
    chunks = []
    pending = data
    while pending:
        try:
            chunk = inflater.decompress(pending, limit + 1 - produced)
        except zlib.error as err:
            raise errors.malformed(f"body is not valid {'gzip' if wbits == GZIP_WBITS else 'deflate'}: {err}") from None
        produced += len(chunk)
        if produced > limit:
            raise errors.too_large(limit)
        chunks.append(chunk)
        if inflater.eof:
            return chunks, inflater.unused_data, produced
        pending = inflater.unconsumed_tail
    raise errors.malformed("compressed body is truncated")


def gunzip(body: bytes, limit: int) -> bytes:
    """Every gzip member of `body`, concatenated; at most `limit` bytes out."""
    chunks: list[bytes] = []
    rest = body
    produced = 0
    while True:
        if not rest.startswith(GZIP_MAGIC):
            raise errors.malformed("body is not valid gzip: a member does not start with the gzip magic bytes")
        member, rest, produced = _inflate_stream(rest, GZIP_WBITS, limit, produced)
        chunks.extend(member)
        if not rest:
            return b"".join(chunks)


def inflate_zlib(body: bytes, limit: int) -> bytes:
    """One zlib (RFC 1950) stream; nothing may follow it."""
    chunks, rest, _ = _inflate_stream(body, ZLIB_WBITS, limit, 0)
    if rest:
        raise errors.malformed("body is not valid deflate: data after the end of the stream")
    return b"".join(chunks)


# HTTP Content-Encoding -> inflater (None: as is)
HTTP_ENCODINGS = {"gzip": gunzip, "x-gzip": gunzip, "deflate": inflate_zlib, "identity": None, "": None}


def _looks_like_zlib(body: bytes) -> bool:
    return len(body) >= 2 and body[0] & 0x0F == 8 and body[0] >> 4 <= 7 and (body[0] << 8 | body[1]) % 31 == 0


def maybe_compressed(message: bytes) -> bool:
    """Whether a gRPC message as sent starts like a gzip member or a zlib stream."""
    return message.startswith(GZIP_MAGIC) or _looks_like_zlib(message)


def inflate_grpc_message(message: bytes, limit: int) -> bytes:
    """A gRPC message as sent (grpc core's decompression off): inflated if it is gzip or zlib, else as is."""
    if message.startswith(GZIP_MAGIC):
        return gunzip(message, limit)
    if _looks_like_zlib(message):
        try:
            return inflate_zlib(message, limit)
        except errors.ReceiverError as err:
            if err.kind is errors.ErrorKind.TOO_LARGE:
                raise
            # not a zlib stream after all: a protobuf message whose first field happens to look like a header
    return message
