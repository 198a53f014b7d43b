"""The write-ahead log: nothing is acknowledged before it is here.

A WAL is a directory of segment files `<seq>.wal`. A segment starts with a header (magic, a caller-chosen
header blob) and holds records framed as `length (u32 LE) | crc32 (u32 LE) | payload`. A torn record at
the tail of a segment (a crash mid-write) fails its length or crc check and ends that segment's replay:
it was never acknowledged, because acknowledgement waits for the write (and, by policy, the fsync).

fsync policy: "always" makes each append durable before it returns; concurrent appenders share one
fsync (group commit). "interval" fsyncs at most every `interval_seconds` (a `kill -9` loses nothing, since
written data is in the page cache; a power cut may lose the last interval). "never" leaves it to the OS.
"""

from __future__ import annotations

import os
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

from collector_ext.storage.dataset_files import fsync_dir

MAGIC = b"AMWAL1\n"
_FRAME = struct.Struct("<II")
_HEADER_LEN = struct.Struct("<I")
SUFFIX = ".wal"


class WalError(OSError):
    """The WAL cannot be written (disk full, permissions): the caller answers UNAVAILABLE."""


class WriteAheadLog:
    def __init__(
        self,
        directory: Path,
        *,
        segment_bytes: int = 64 * 1024 * 1024,
        fsync: str = "always",
        interval_seconds: float = 0.2,
        segment_header: Callable[[], bytes] = lambda: b"",
    ) -> None:
        if fsync not in ("always", "interval", "never"):
            raise ValueError(f"unknown fsync policy {fsync!r}")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.segment_bytes = segment_bytes
        self.fsync_policy = fsync
        self.interval_seconds = interval_seconds
        self._segment_header = segment_header
        self._lock = threading.Lock()  # guards the current segment's file and positions
        self._sync_lock = threading.Lock()  # one fsync at a time; waiters find their data already synced
        existing = self.segments()
        self._seq = (existing[-1] + 1) if existing else 1
        self._file = None
        self._written = 0  # bytes written to the current segment
        self._synced = 0  # bytes of the current segment known durable
        self._last_sync = time.monotonic()
        self._closed_bytes = sum(self._path(s).stat().st_size for s in existing)

    # -- segments ----------------------------------------------------------------------------------
    def _path(self, seq: int) -> Path:
        return self.directory / f"{seq:012d}{SUFFIX}"

    def segments(self) -> list[int]:
        """Sequence numbers of the segments on disk, oldest first."""
        return sorted(int(p.stem) for p in self.directory.glob(f"*{SUFFIX}") if p.stem.isdigit())

    @property
    def current_seq(self) -> int:
        return self._seq

    @property
    def bytes_on_disk(self) -> int:
        return self._closed_bytes + self._written

    def _open_segment(self) -> None:
        header = self._segment_header()
        path = self._path(self._seq)
        handle = open(path, "ab", buffering=0)  # noqa: SIM115 (kept open across appends)
        handle.write(MAGIC + _HEADER_LEN.pack(len(header)) + header)
        os.fsync(handle.fileno())
        fsync_dir(self.directory)
        self._file = handle
        self._written = handle.tell()
        self._synced = self._written

    def _close_segment(self) -> None:
        """Under self._lock: make the open segment durable and close it; the next append opens seq + 1."""
        if self._file is None:
            return
        os.fsync(self._file.fileno())
        self._file.close()
        self._file = None
        self._closed_bytes += self._written
        self._written = self._synced = 0
        self._seq += 1

    def rotate(self) -> int:
        """Close the current segment (if it holds anything) and return its seq; the next append opens a new one."""
        with self._lock:
            closed = self._seq
            self._close_segment()
            return closed

    def retire(self, seq: int) -> None:
        """Delete a closed segment whose records are all durable elsewhere."""
        with self._lock:
            if seq == self._seq and self._file is not None:
                raise ValueError("cannot retire the open segment")
            path = self._path(seq)
            try:
                size = path.stat().st_size
                path.unlink()
                self._closed_bytes -= size
            except FileNotFoundError:
                pass

    def retire_through(self, seq: int) -> None:
        """Delete every closed segment with a seq <= `seq`."""
        for old in self.segments():
            if old <= seq and not (old == self._seq and self._file is not None):
                self.retire(old)

    # -- writing -----------------------------------------------------------------------------------
    def append(self, payload: bytes) -> int:
        """Append one record; returns the segment seq it went to, once durable per the fsync policy."""
        frame = _FRAME.pack(len(payload), zlib.crc32(payload)) + payload
        with self._lock:
            try:
                if self._file is not None and self._written + len(frame) > self.segment_bytes:
                    self._close_segment()
                if self._file is None:
                    self._open_segment()
                self._file.write(frame)
            except OSError as err:
                raise WalError(err.errno, f"write-ahead log: {err.strerror}") from err
            self._written += len(frame)
            seq, position, handle = self._seq, self._written, self._file
        interval_due = time.monotonic() - self._last_sync >= self.interval_seconds
        if self.fsync_policy == "always" or (self.fsync_policy == "interval" and interval_due):
            self._sync(handle, seq, position)
        return seq

    def _sync(self, handle, seq: int, position: int) -> None:
        with self._sync_lock:
            with self._lock:
                if seq != self._seq or self._synced >= position:
                    return  # rotated (rotation fsyncs) or another appender's fsync covered us
                target = self._written
                fd = os.dup(handle.fileno())  # a rotation may close `handle` while we fsync
            try:
                os.fsync(fd)
            except OSError as err:
                raise WalError(err.errno, f"write-ahead log fsync: {err.strerror}") from err
            finally:
                os.close(fd)
            with self._lock:
                if seq == self._seq:
                    self._synced = max(self._synced, target)
                self._last_sync = time.monotonic()

    def close(self) -> None:
        with self._lock:
            self._close_segment()

    # -- reading -----------------------------------------------------------------------------------
    def header(self, seq: int) -> bytes:
        with open(self._path(seq), "rb") as handle:
            return _read_header(handle)

    def replay(self) -> Iterator[tuple[int, bytes]]:
        """Every intact record of every segment on disk, oldest first, as (segment seq, payload)."""
        for seq in self.segments():
            if seq == self._seq and self._file is not None:
                continue  # records appended in this run are not replayed
            with open(self._path(seq), "rb") as handle:
                try:
                    _read_header(handle)
                except ValueError:
                    continue  # a segment torn while its header was written holds no acknowledged data
                while True:
                    frame = handle.read(_FRAME.size)
                    if len(frame) < _FRAME.size:
                        break
                    length, crc = _FRAME.unpack(frame)
                    payload = handle.read(length)
                    if len(payload) < length or zlib.crc32(payload) != crc:
                        break  # torn tail: never acknowledged
                    yield seq, payload


def _read_header(handle) -> bytes:
    magic = handle.read(len(MAGIC))
    raw_len = handle.read(_HEADER_LEN.size)
    if magic != MAGIC or len(raw_len) < _HEADER_LEN.size:
        raise ValueError("not a WAL segment")
    (length,) = _HEADER_LEN.unpack(raw_len)
    header = handle.read(length)
    if len(header) < length:
        raise ValueError("torn WAL header")
    return header
